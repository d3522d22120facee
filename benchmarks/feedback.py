"""The feedback loop, measured: fold-in quality through the API, and write throughput.

    python -m benchmarks.feedback fold-in --data-dir DIR [--users 100] [--split time|random]
    python -m benchmarks.feedback writes --model-dir DIR [--connections 32 --duration 10]

`fold-in`: seeded users taken out of the data set, a bundle trained without them; the older half
of each one's ratings (ties in file order) goes in through `POST /users/{id}/ratings`, and the
fold-in recommendations are scored against the newer half (relevant: 4 stars or more; candidates:
every movie not in the older half) by the evaluation's own NDCG@10, beside most-popular (most
ratings in the training data) on the same users and candidates, and beside a bundle trained with
the older halves inside (the same users as users the model was trained on). `--split random`
halves each user's ratings at random instead of by time: the same task without its time order.

`writes`: `PUT /users/{id}/ratings/{movie}` under wrk, each request a new (user, movie, stars), on
SQLite and on PostgreSQL (a throwaway cluster). Details: the README's Feedback section.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import parser, save
from benchmarks.servers import Server, postgres_database
from benchmarks.training_speed import train
from benchmarks.wrk import known_ids, run_wrk
from training.evaluate import RELEVANT_STARS, ranking_metrics


def split_users(
    ratings: pd.DataFrame, n_users: int, seed: int, by: str = "time"
) -> tuple[np.ndarray, pd.DataFrame, pd.DataFrame]:
    """The chosen users, and their first and second halves: by timestamp, ties in file order, or
    (`by="random"`) in a seeded random order."""
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(ratings["userId"].unique(), n_users, replace=False))
    theirs = ratings[ratings["userId"].isin(users)]
    order = np.arange(len(theirs)) if by == "time" else rng.permutation(len(theirs))
    theirs = theirs.assign(order=order)
    theirs = theirs.sort_values(["userId", "order"] if by == "random" else ["userId", "timestamp", "order"])
    position, size = theirs.groupby("userId").cumcount(), theirs.groupby("userId")["userId"].transform("size")
    return users, theirs[position < size // 2], theirs[position >= size // 2]


def served(source: Path, ratings: pd.DataFrame, work: Path) -> Server:
    """A server on a bundle trained on `ratings` with the source's movies.csv, a state of its own."""
    (work / "data").mkdir(parents=True)
    ratings[["userId", "movieId", "rating", "timestamp"]].to_csv(work / "data" / "ratings.csv", index=False)
    shutil.copy(source / "movies.csv", work / "data" / "movies.csv")
    train(work / "data", work / "models", ["--no-feedback"])
    return Server(work / "models", {"STATE_DIR": str(work / "state"), "RELOAD_INTERVAL_S": "0"})


def ndcg(server: Server, users: list[int], relevant: list[np.ndarray]) -> float:
    """NDCG@10 of the server's recommendations for `users`."""
    answers = [server.fetch(f"/users/{user}/recommendations?k=10")["recommendations"] for user in users]
    tops = [[item["movie_id"] for item in answer] for answer in answers]
    return ranking_metrics(np.array(tops), relevant, 10)["ndcg@10"]


def fold_in(args: argparse.Namespace) -> dict:
    ratings = pd.read_csv(args.data_dir / "ratings.csv")
    users, first, second = split_users(ratings, args.users, args.seed, args.split)
    good = second[second.rating >= RELEVANT_STARS]
    kept = [int(u) for u in users if (good.userId == u).any()]
    relevant = [good.loc[good.userId == u, "movieId"].to_numpy() for u in kept]
    others = ratings[~ratings["userId"].isin(users)]
    popular = others["movieId"].value_counts().index.tolist()  # most-rated first, as the fallback
    results = {"users": len(kept), "first_half_movies_unknown_to_the_bundle": 0}
    with tempfile.TemporaryDirectory(prefix="fold-in-") as scratch:
        with served(args.data_dir, others, without := Path(scratch) / "without") as server:
            catalogue = set(known_ids(without / "models")[1])
            popular_tops = []
            for user in kept:
                mine = first[first.userId == user]
                known = mine[mine.movieId.isin(catalogue)]
                results["first_half_movies_unknown_to_the_bundle"] += len(mine) - len(known)
                items = [
                    {"movie_id": int(m), "rating": float(r)}
                    for m, r in zip(known.movieId, known.rating, strict=True)
                ]
                for start in range(0, len(items), 1000):  # the route takes 1 to 1,000 a request
                    server.fetch(f"/users/{user}/ratings", {"ratings": items[start : start + 1000]})
                seen = set(mine.movieId)
                popular_tops.append([m for m in popular if m not in seen][:10])
            results["fold_in_ndcg@10"] = ndcg(server, kept, relevant)
        results["most_popular_ndcg@10"] = ranking_metrics(np.array(popular_tops), relevant, 10)["ndcg@10"]
        results["ratio"] = results["fold_in_ndcg@10"] / results["most_popular_ndcg@10"]
        with served(args.data_dir, pd.concat([others, first]), Path(scratch) / "inside") as server:
            results["trained_on_ndcg@10"] = ndcg(server, kept, relevant)
    print(json.dumps(results, indent=1))
    return results


def writes(args: argparse.Namespace) -> dict:
    """Each engine in turn under the same wrk load of new ratings."""
    movies, rng, results = known_ids(args.model_dir)[1], np.random.default_rng(7), {}
    with tempfile.TemporaryDirectory(prefix="writes-") as scratch:
        lines, users = Path(scratch) / "writes.txt", rng.integers(10**9, 2 * 10**9, 200_000)
        rated = rng.choice(movies, len(users)), rng.integers(1, 11, len(users)) / 2  # (movie, stars)
        lines.write_text("".join(f"{u} {m} {s}\n" for u, m, s in zip(users, *rated, strict=True)))
        for engine in args.engines.split(","):
            env = {"STATE_DIR": str(Path(scratch) / engine), "RELOAD_INTERVAL_S": "0"}
            database = postgres_database() if engine == "postgresql" else contextlib.nullcontext()
            with (
                database as url,
                Server(args.model_dir, env | ({"DATABASE_URL": url} if url else {})) as server,
            ):
                run = run_wrk(server.url, "ratings", lines, args.connections, args.duration)
            results[engine] = {
                "ratings_per_s": run.requests_per_s,
                "p99_ms": run.p99_ms,
                "errors": run.errors,
            }
            print(f"{engine}: {json.dumps(results[engine])}")
    return results


def main(argv: list[str] | None = None) -> int:
    arguments = parser("feedback", __doc__)
    commands = arguments.add_subparsers(dest="command", required=True)
    one = commands.add_parser("fold-in", help="fold-in quality of held-out users through the API")
    one.add_argument(
        "--data-dir", type=Path, required=True, help="a MovieLens folder (ratings.csv, movies.csv)"
    )
    one.add_argument("--users", type=int, default=100)
    one.add_argument("--seed", type=int, default=42)
    one.add_argument("--split", choices=["time", "random"], default="time", help="how each user is halved")
    two = commands.add_parser("writes", help="PUT throughput on SQLite and PostgreSQL")
    two.add_argument("--model-dir", type=Path, required=True)
    two.add_argument("--connections", type=int, default=32)
    two.add_argument("--duration", type=float, default=10)
    two.add_argument("--engines", default="sqlite,postgresql")
    args = arguments.parse_args(argv)
    save(args.command, args, fold_in(args) if args.command == "fold-in" else writes(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
