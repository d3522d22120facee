"""A generated MovieLens-shaped data set at the size of ml-25m, for scale measurements.

ml-25m itself is not reachable from these machines, so this writes `ratings.csv` and `movies.csv`
with its shape: about 162,000 users with at least 20 ratings each (long-tailed activity), 59,000
movies with sparse ids and long-tailed (Zipf-like) popularity, 25 million distinct user-movie
pairs, and half-star ratings drawn from a low-rank model plus noise, so that there is something
to learn. Generation is vectorised and seeded: the same arguments give the same files.

    python -m benchmarks.synthetic --out ~/.cache/movielens/synthetic-25m
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.random import Generator

ML25M_USERS = 162_541
ML25M_MOVIES = 59_047
ML25M_RATINGS = 25_000_095
GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Comedy",
    "Crime",
    "Drama",
    "Fantasy",
    "Horror",
    "Romance",
    "Sci-Fi",
)


def activity(rng: Generator, users: int, ratings: int, minimum: int = 20) -> np.ndarray:
    """Ratings per user: log-normal, at least `minimum`, summing to about `ratings`."""
    raw = rng.lognormal(mean=0.0, sigma=1.2, size=users)
    return minimum + np.floor(raw / raw.sum() * (ratings - minimum * users)).astype(np.int64)


def popularity(rng: Generator, movies: int, exponent: float = 1.1) -> np.ndarray:
    """Sampling weights of movies: Zipf-like over a random order, so ids carry no rank."""
    weights = 1.0 / (np.arange(movies) + 10.0) ** exponent
    rng.shuffle(weights)
    return weights / weights.sum()


def distinct_pairs(rng: Generator, counts: np.ndarray, weights: np.ndarray, target: int) -> np.ndarray:
    """(user row, movie row) pairs without repeats: oversample, de-duplicate, trim to `target`."""
    users = np.repeat(np.arange(len(counts), dtype=np.int64), np.ceil(counts * 1.3).astype(np.int64))
    movies = np.searchsorted(np.cumsum(weights), rng.random(len(users)), side="right")
    movies = np.minimum(movies, len(weights) - 1)
    keys = np.unique(users * len(weights) + movies)
    del users, movies
    if len(keys) > target:
        keys = np.sort(rng.choice(keys, size=target, replace=False))
    return np.stack([keys // len(weights), keys % len(weights)], axis=1)


def stars(rng: Generator, pairs: np.ndarray, users: int, movies: int, dim: int = 8) -> np.ndarray:
    """Half-star ratings from biases plus a low-rank affinity plus noise, in chunks."""
    user_bias, movie_bias = rng.normal(0, 0.35, users), rng.normal(0, 0.45, movies)
    user_factors = rng.normal(0, 1 / np.sqrt(dim), (users, dim)).astype(np.float32)
    movie_factors = rng.normal(0, 1 / np.sqrt(dim), (movies, dim)).astype(np.float32)
    out = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), 1 << 22):
        u, m = pairs[start : start + (1 << 22), 0], pairs[start : start + (1 << 22), 1]
        affinity = np.einsum("ij,ij->i", user_factors[u], movie_factors[m])
        raw = 3.5 + user_bias[u] + movie_bias[m] + 0.9 * affinity + rng.normal(0, 0.75, len(u))
        out[start : start + len(u)] = np.clip(np.round(raw * 2) / 2, 0.5, 5.0)
    return out


def generate(out: Path, users: int, movies: int, ratings: int, seed: int = 0) -> Path:
    """Writes `ratings.csv` and `movies.csv` into `out` (skipped when both exist)."""
    if (out / "ratings.csv").is_file() and (out / "movies.csv").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts, weights = activity(rng, users, ratings), popularity(rng, movies)
    pairs = distinct_pairs(rng, counts, weights, ratings)  # sorted by user, as MovieLens files are
    movie_ids = np.sort(rng.choice(np.arange(1, int(movies * 3.6)), size=movies, replace=False))
    frame = pd.DataFrame(
        {
            "userId": pairs[:, 0] + 1,
            "movieId": movie_ids[pairs[:, 1]],
            "rating": stars(rng, pairs, users, movies),
            "timestamp": rng.integers(789_652_009, 1_574_327_703, len(pairs)),
        }
    )
    partial = out / "ratings.csv.partial"
    frame.to_csv(partial, index=False, float_format="%.1f", chunksize=1 << 20)
    partial.rename(out / "ratings.csv")
    genres = rng.integers(0, len(GENRES), (movies, 2))
    pd.DataFrame(
        {
            "movieId": movie_ids,
            "title": [f"Synthetic movie {i} ({1900 + i % 120})" for i in movie_ids],
            "genres": [f"{GENRES[a]}|{GENRES[b]}" if a != b else GENRES[a] for a, b in genres],
        }
    ).to_csv(out / "movies.csv", index=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path.home() / ".cache" / "movielens" / "synthetic-25m")
    parser.add_argument("--users", type=int, default=ML25M_USERS)
    parser.add_argument("--movies", type=int, default=ML25M_MOVIES)
    parser.add_argument("--ratings", type=int, default=ML25M_RATINGS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = generate(args.out, args.users, args.movies, args.ratings, args.seed)
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
