"""A generated MovieLens-shaped data set at the size of ml-25m, for scale measurements.

    python -m benchmarks.synthetic --out ~/.cache/movielens/synthetic-25m

ratings.csv and movies.csv with ml-25m's shape (benchmarks/README.md); seeded and vectorised: the
same arguments give the same files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import parser

GENRES = "Action Adventure Animation Comedy Crime Drama Fantasy Horror Romance Sci-Fi"
CHUNK = 1 << 22


def distinct_pairs(rng: np.random.Generator, users: int, movies: int, ratings: int) -> np.ndarray:
    """Distinct (user row, movie row) pairs, sorted by user as MovieLens files are."""
    activity = rng.lognormal(mean=0.0, sigma=1.2, size=users)  # ratings per user, at least 20
    counts = 20 + np.floor(activity / activity.sum() * (ratings - 20 * users)).astype(np.int64)
    weights = 1.0 / (np.arange(movies) + 10.0) ** 1.1  # Zipf-like over a random order of the ids
    rng.shuffle(weights)
    weights /= weights.sum()
    # Oversample, de-duplicate, trim to `ratings`.
    user_rows = np.repeat(np.arange(users, dtype=np.int64), np.ceil(counts * 1.3).astype(np.int64))
    movie_rows = np.searchsorted(np.cumsum(weights), rng.random(len(user_rows)), side="right")
    keys = np.unique(user_rows * movies + np.minimum(movie_rows, movies - 1))
    del user_rows, movie_rows
    if len(keys) > ratings:
        keys = np.sort(rng.choice(keys, size=ratings, replace=False))
    return np.stack([keys // movies, keys % movies], axis=1)


def half_stars(rng: np.random.Generator, pairs: np.ndarray, users: int, movies: int) -> np.ndarray:
    """Half-star ratings from biases plus a low-rank affinity plus noise, in chunks."""
    user_bias, movie_bias = rng.normal(0, 0.35, users), rng.normal(0, 0.45, movies)
    user_factors = rng.normal(0, 1 / np.sqrt(8), (users, 8)).astype(np.float32)
    movie_factors = rng.normal(0, 1 / np.sqrt(8), (movies, 8)).astype(np.float32)
    stars = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), CHUNK):
        u, m = pairs[start : start + CHUNK, 0], pairs[start : start + CHUNK, 1]
        affinity = np.einsum("ij,ij->i", user_factors[u], movie_factors[m])
        raw = 3.5 + user_bias[u] + movie_bias[m] + 0.9 * affinity + rng.normal(0, 0.75, len(u))
        stars[start : start + len(u)] = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)
    return stars


def generate(out: Path, users: int, movies: int, ratings: int, seed: int = 0) -> Path:
    """Writes `ratings.csv` and `movies.csv` into `out` (skipped when both exist)."""
    if (out / "ratings.csv").is_file() and (out / "movies.csv").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = distinct_pairs(rng, users, movies, ratings)
    movie_ids = np.sort(rng.choice(np.arange(1, int(movies * 3.6)), size=movies, replace=False))
    stars = half_stars(rng, pairs, users, movies)
    timestamps = rng.integers(789_652_009, 1_574_327_703, len(pairs))
    frame = pd.DataFrame({"userId": pairs[:, 0] + 1, "movieId": movie_ids[pairs[:, 1]], "rating": stars})
    partial = out / "ratings.csv.partial"
    frame.assign(timestamp=timestamps).to_csv(partial, index=False, float_format="%.1f", chunksize=1 << 20)
    partial.rename(out / "ratings.csv")
    genres, names = rng.integers(0, 10, (movies, 2)), GENRES.split(" ")
    titles = [f"Synthetic movie {i} ({1900 + i % 120})" for i in movie_ids]
    labels = [f"{names[a]}|{names[b]}" if a != b else names[a] for a, b in genres]
    catalogue = pd.DataFrame({"movieId": movie_ids, "title": titles, "genres": labels})
    catalogue.to_csv(out / "movies.csv", index=False)
    return out


def main() -> None:
    arguments = parser("synthetic", __doc__)
    arguments.add_argument("--out", type=Path, default=Path.home() / ".cache" / "movielens" / "synthetic-25m")
    out = arguments.parse_args().out
    print(f"wrote {generate(out, users=162_541, movies=59_047, ratings=25_000_095)}")


if __name__ == "__main__":
    main()
