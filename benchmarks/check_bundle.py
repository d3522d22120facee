"""Independent re-checks of a bundle's validation figures: RMSE, NDCG@10, precision@10, recall@10.

    python -m benchmarks.check_bundle --bundle models/current --data-dir DIR_OR_ZIP [--rank-by ranking]

No `app` or `training` code (so as not to import what is checked): keras, numpy and pandas on the
raw ratings and the bundle's files as app/bundle.py describes them. It redoes the seed's split
(`np.random.RandomState(seed).permutation(n)`, first part train, seed and fraction from
metadata.json); RMSE in stars of the `rating` output (or the only one); for each validation user
with a held-out rating >= 4 (a seeded sample of `evaluation_users` of them when training sampled so),
the top 10 by the `ranking` output (or the only one) among the movies not rated in train. Exit 0
when every figure matches metadata.json `metrics.model` (RMSE within 1e-4 or --tolerance, ranking
within 0.005) and the RMSE is at most --max-rmse if given, 1 if not, 2 for unusable arguments or files.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import parser

MODEL, ENCODERS, METADATA = "model.keras", "encoders.json", "metadata.json"  # as app.bundle names them
K = 10
RELEVANT_STARS = 4.0
BATCH_SIZE = 65536  # pairs per model.predict call
TOLERANCES = {"rmse": 1e-4, f"ndcg@{K}": 0.005, f"precision@{K}": 0.005, f"recall@{K}": 0.005}


def read_ratings(source: Path) -> pd.DataFrame:
    """ratings.csv in file order, from a folder or a MovieLens .zip (read in place)."""
    columns = ["userId", "movieId", "rating"]
    if source.is_dir():
        return pd.read_csv(source / "ratings.csv", usecols=columns)
    with zipfile.ZipFile(source) as archive:
        members = [n for n in archive.namelist() if n.endswith("ratings.csv")]
        if not members:
            raise FileNotFoundError(f"{source} holds no ratings.csv")
        with archive.open(min(members, key=len)) as handle:
            return pd.read_csv(handle, usecols=columns)


def encode(ids: pd.Series, known: list[int], what: str) -> np.ndarray:
    """Rows of `ids` in the encoders' order, which must be the order of first appearance."""
    if pd.unique(ids).tolist() != known:
        raise ValueError(f"encoders.json {what} are not this data's ids in order of first appearance")
    return pd.Index(known).get_indexer(ids).astype(np.int32)


def scores(model, pairs: np.ndarray, output: str, batch_size: int) -> np.ndarray:
    """The model's `output` for int32 `(N, 2)` pairs, flat; a single output stands for `rating`."""
    raw = model.predict(pairs, batch_size=batch_size, verbose=0)
    if len(model.outputs) == 1:
        if output == "ranking":
            raise ValueError("model.keras has a single output, no 'ranking' one")
        return np.asarray(raw, dtype=np.float64).reshape(-1)
    named = raw if isinstance(raw, dict) else dict(zip(model.output_names, raw, strict=True))
    return np.asarray(named[output], dtype=np.float64).reshape(-1)


def ranking_figures(top: np.ndarray, relevant: list[np.ndarray]) -> dict[str, float]:
    hits = np.array([np.isin(row, rel) for row, rel in zip(top, relevant, strict=True)], float)
    n_relevant = np.array([len(rel) for rel in relevant], float)
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    ideal = np.array([discounts[: min(int(n), K)].sum() for n in n_relevant])
    return {
        f"precision@{K}": float(np.mean(hits.sum(1) / K)),
        f"recall@{K}": float(np.mean(hits.sum(1) / n_relevant)),
        f"ndcg@{K}": float(np.mean(hits @ discounts / ideal)),
    }


def movies_of(rows: np.ndarray, users: np.ndarray, movies: np.ndarray, wanted: np.ndarray) -> list:
    """Each wanted user's movie rows among the ratings at `rows`."""
    rows = rows[np.argsort(users[rows], kind="stable")]
    starts, ends = (np.searchsorted(users[rows], wanted, side) for side in ("left", "right"))
    return [movies[rows[start:end]] for start, end in zip(starts, ends, strict=True)]


def recheck(
    bundle: Path, ratings: pd.DataFrame, rank_by: str | None, batch_size=BATCH_SIZE
) -> dict[str, float]:
    import keras

    metadata = json.loads((bundle / METADATA).read_text())
    encoders = json.loads((bundle / ENCODERS).read_text())
    users = encode(ratings["userId"], encoders["users"], "users")
    movies = encode(ratings["movieId"], encoders["movies"], "movies")
    stars = ratings["rating"].to_numpy(np.float64)
    seed, fraction = int(metadata["split"]["seed"]), float(metadata["split"]["validation_fraction"])
    order = np.random.RandomState(seed).permutation(len(ratings))
    train, validation = np.split(order, [int((1 - fraction) * len(ratings))])

    model = keras.saving.load_model(bundle / MODEL, safe_mode=True)
    rank_output = rank_by or ("ranking" if "ranking" in model.output_names else "rating")
    pairs = np.stack([users[validation], movies[validation]], axis=1)
    low, high = float(encoders["rating_min"]), float(encoders["rating_max"])
    predicted = low + scores(model, pairs, "rating", batch_size) * (high - low)
    figures = {"rmse": float(np.sqrt(np.mean((predicted - stars[validation]) ** 2)))}

    relevant_rows = validation[stars[validation] >= RELEVANT_STARS]
    rankers = np.unique(users[relevant_rows])
    sample = metadata.get("hyperparameters", {}).get("evaluation_users")
    if sample is not None and len(rankers) > sample:  # as training sampled them
        rankers = np.sort(np.random.default_rng(seed).choice(rankers, sample, replace=False))
    if not len(rankers):
        return figures
    seen = movies_of(train, users, movies, rankers)
    relevant = movies_of(relevant_rows, users, movies, rankers)
    n_movies = len(encoders["movies"])
    block = max(1, (1 << 20) // n_movies)
    tops = []
    for start in range(0, len(rankers), block):  # every (user, movie) pair of a block of users
        chunk = rankers[start : start + block]
        candidates = np.stack([np.repeat(chunk, n_movies), np.tile(np.arange(n_movies), len(chunk))], 1)
        rows = scores(model, candidates.astype(np.int32), rank_output, batch_size).reshape(len(chunk), -1)
        for i, rated in enumerate(seen[start : start + block]):
            rows[i, rated] = -np.inf
        best = np.argpartition(-rows, K - 1, axis=1)[:, :K]
        tops.append(np.take_along_axis(best, np.argsort(-np.take_along_axis(rows, best, 1), 1, "stable"), 1))
    return figures | ranking_figures(np.concatenate(tops), relevant)


def main(argv: list[str] | None = None) -> int:
    arguments = parser("check_bundle", __doc__)
    arguments.add_argument("--bundle", type=Path, default=Path("models/current"), help="bundle folder")
    arguments.add_argument("--data-dir", type=Path, required=True, help="MovieLens folder or .zip")
    arguments.add_argument("--rank-by", choices=["rating", "ranking"], help="default: ranking, if any")
    arguments.add_argument("--tolerance", type=float, default=TOLERANCES["rmse"], help="for the RMSE (stars)")
    arguments.add_argument("--max-rmse", type=float, help="also fail when the RMSE is above this (stars)")
    args = arguments.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        recorded = json.loads((args.bundle / METADATA).read_text())["metrics"]["model"]
        figures = recheck(args.bundle.resolve(), read_ratings(args.data_dir), args.rank_by)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        print(f"check failed: {error!r}", file=sys.stderr)
        return 2
    print(f"bundle {args.bundle.resolve()}, data {args.data_dir}")
    problems = []
    for name, tolerance in (TOLERANCES | {"rmse": args.tolerance}).items():
        mine, theirs = figures.get(name), recorded.get(name)
        print(f"recomputed {name} {mine}, recorded {theirs} (tolerance {tolerance:g})")
        if mine != theirs and (None in (mine, theirs) or abs(mine - theirs) > tolerance):
            problems.append(
                f"{name} {mine} differs from the recorded {name} {theirs} by more than {tolerance:g}"
            )
    if args.max_rmse is not None and figures["rmse"] > args.max_rmse:
        problems.append(f"rmse {figures['rmse']:.6f} is above --max-rmse {args.max_rmse}")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if not problems:
        print("OK: every figure matches metadata.json")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
