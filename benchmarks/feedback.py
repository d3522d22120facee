"""The feedback loop, measured: fold-in quality through the API, and write throughput.

    python -m benchmarks.feedback fold-in --data-dir DIR [--users 100]
    python -m benchmarks.feedback writes --model-dir DIR [--connections 32 --duration 10]

`fold-in`: 100 seeded users are taken out of the data set altogether and a bundle is trained
without them. Each one's ratings, oldest first (ties in file order), are split in halves: the
first half goes in through `POST /users/{id}/ratings`, then `GET /users/{id}/recommendations`
(fold-in) is scored against the second half (relevant = 4 stars or more; candidates = every
movie not in the first half) by the evaluation's own NDCG@10, beside most-popular (number of
ratings in the training data) on the same users and candidates. For comparison, a second bundle
is trained with the first halves inside: the same users as users the model was trained on.

`writes`: `PUT /users/{id}/ratings/{movie}` under wrk, each request a new (user, movie, stars)
drawn from a large pool, against the server on SQLite and on PostgreSQL (a throwaway cluster).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from app.bundle import ENCODERS_FILE
from app.bundle_store import current_bundle_path
from benchmarks import save
from benchmarks.servers import Server
from benchmarks.wrk import run_wrk
from training.evaluate import RELEVANT_STARS, ranking_metrics


def split_users(
    ratings: pd.DataFrame, n_users: int, seed: int
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The chosen users, and their first and second halves (by timestamp, ties in file order)."""
    users = np.sort(np.random.default_rng(seed).choice(ratings["userId"].unique(), n_users, replace=False))
    theirs = ratings[ratings["userId"].isin(users)].copy()
    theirs["order"] = np.arange(len(theirs))
    theirs = theirs.sort_values(["userId", "timestamp", "order"], kind="stable")
    position = theirs.groupby("userId").cumcount()
    size = theirs.groupby("userId")["userId"].transform("size")
    return users, theirs[position < size // 2], theirs[position >= size // 2]


def train(source: Path, ratings: pd.DataFrame, data_dir: Path, model_dir: Path) -> Path:
    """`python -m training` on `ratings` with the source's movies.csv; the published bundle."""
    data_dir.mkdir(parents=True)
    ratings[["userId", "movieId", "rating", "timestamp"]].to_csv(data_dir / "ratings.csv", index=False)
    shutil.copy(source / "movies.csv", data_dir / "movies.csv")
    command = [sys.executable, "-m", "training", "--data-dir", str(data_dir), "--model-dir", str(model_dir)]
    subprocess.run([*command, "--verbose", "0", "--no-feedback"], check=True, stdout=subprocess.DEVNULL)
    return current_bundle_path(model_dir)


def listed(server: Server, user: int, **params: object) -> list[int]:
    response = httpx.get(f"{server.url}/users/{user}/recommendations", params={"k": 10, **params}, timeout=30)
    response.raise_for_status()
    return [item["movie_id"] for item in response.json()["recommendations"]]


def ndcg(tops: list[list[int]], relevant: list[np.ndarray]) -> float:
    return ranking_metrics(np.array(tops), relevant, 10)["ndcg@10"]


def fold_in(args: argparse.Namespace) -> dict:
    ratings = pd.read_csv(args.data_dir / "ratings.csv")
    users, first, second = split_users(ratings, args.users, args.seed)
    relevant = [
        second.loc[(second.userId == u) & (second.rating >= RELEVANT_STARS), "movieId"].to_numpy()
        for u in users
    ]
    kept = [i for i, r in enumerate(relevant) if len(r)]
    with tempfile.TemporaryDirectory(prefix="fold-in-") as scratch:
        work = Path(scratch)
        others = ratings[~ratings["userId"].isin(users)]
        without = train(args.data_dir, others, work / "without", work / "models-without")
        catalogue = set(json.loads((without / ENCODERS_FILE).read_text())["movies"])
        popular = others["movieId"].value_counts().index.tolist()  # most-rated first, as the fallback
        results = {"users": len(kept), "first_half_movies_unknown_to_the_bundle": 0}
        with Server(
            work / "models-without", {"STATE_DIR": str(work / "state"), "RELOAD_INTERVAL_S": "0"}
        ) as server:
            tops, popular_tops = [], []
            for i in kept:
                mine = first[first.userId == users[i]]
                known = mine[mine.movieId.isin(catalogue)]
                results["first_half_movies_unknown_to_the_bundle"] += len(mine) - len(known)
                items = [
                    {"movie_id": int(m), "rating": float(r)}
                    for m, r in zip(known.movieId, known.rating, strict=True)
                ]
                for start in range(0, len(items), 1000):  # the route takes 1 to 1,000 a request
                    body = {"ratings": items[start : start + 1000]}
                    httpx.post(
                        f"{server.url}/users/{users[i]}/ratings", json=body, timeout=30
                    ).raise_for_status()
                tops.append(listed(server, users[i]))
                seen = set(mine.movieId)
                popular_tops.append([m for m in popular if m not in seen][:10])
        picked = [relevant[i] for i in kept]
        results["fold_in_ndcg@10"] = ndcg(tops, picked)
        results["most_popular_ndcg@10"] = ndcg(popular_tops, picked)
        results["ratio"] = results["fold_in_ndcg@10"] / results["most_popular_ndcg@10"]
        inside = train(args.data_dir, pd.concat([others, first]), work / "inside", work / "models-inside")
        with Server(
            inside.parent, {"STATE_DIR": str(work / "state-inside"), "RELOAD_INTERVAL_S": "0"}
        ) as server:
            results["trained_on_ndcg@10"] = ndcg([listed(server, users[i]) for i in kept], picked)
    print(json.dumps(results, indent=1))
    return results


def writes(args: argparse.Namespace) -> dict:
    from tests.support.postgres import PostgresCluster, find_binaries

    encoders = json.loads((current_bundle_path(args.model_dir) / ENCODERS_FILE).read_text())
    rng, results = np.random.default_rng(7), {}
    with tempfile.TemporaryDirectory(prefix="writes-") as scratch:
        work = Path(scratch)
        lines = work / "writes.txt"
        users = rng.integers(10**9, 2 * 10**9, 200_000)
        movies, stars = rng.choice(encoders["movies"], len(users)), rng.integers(1, 11, len(users)) / 2
        lines.write_text("".join(f"{u} {m} {s}\n" for u, m, s in zip(users, movies, stars, strict=True)))
        for engine in args.engines.split(","):
            env = {"STATE_DIR": str(work / engine), "RELOAD_INTERVAL_S": "0"}
            cluster = None
            if engine == "postgresql":
                cluster = PostgresCluster(find_binaries())
                cluster.init()
                cluster.start()
                env["DATABASE_URL"] = cluster.new_database()
            try:
                with Server(args.model_dir, env) as server:
                    run = run_wrk(server.url, "ratings", lines, args.connections, args.duration)
            finally:
                if cluster is not None:
                    cluster.destroy()
            results[engine] = {
                "ratings_per_s": run.requests_per_s,
                "p99_ms": run.p99_ms,
                "errors": run.errors,
            }
            print(
                f"{engine}: {run.requests_per_s:.0f} ratings/s, p99 {run.p99_ms:.1f} ms, {run.errors} errors"
            )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m benchmarks.feedback", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("fold-in", help="fold-in quality of held-out users through the API")
    one.add_argument(
        "--data-dir", type=Path, required=True, help="a MovieLens folder (ratings.csv, movies.csv)"
    )
    one.add_argument("--users", type=int, default=100)
    one.add_argument("--seed", type=int, default=42)
    two = commands.add_parser("writes", help="PUT throughput on SQLite and PostgreSQL")
    two.add_argument("--model-dir", type=Path, required=True)
    two.add_argument("--connections", type=int, default=32)
    two.add_argument("--duration", type=float, default=10)
    two.add_argument("--engines", default="sqlite,postgresql")
    args = parser.parse_args(argv)
    save(args.command, fold_in(args) if args.command == "fold-in" else writes(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
