"""Small MovieLens-shaped data, generated: ratings, a catalogue, and the two CSV files."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

# Ids a contiguous 0..n-1 encoding would get wrong: gaps, large values, out of order.
FIXED_USER_IDS = (7, 1003, 99999)
FIXED_MOVIE_IDS = (1, 99999, 123_456_789)
# Gaps, zero, negative, beyond int32 and the largest integer a float64 CSV column keeps exactly.
ODD_USER_IDS = [2**53 - 1, 0, 7, 10**15 + 3, -4, 2**31]
ODD_MOVIE_IDS = [99999, 2**40 + 1, 1, 5_000_000_000]

MOVIES_HEADER = ["movieId", "title", "genres"]
RATINGS_HEADER = ["userId", "movieId", "rating", "timestamp"]


def random_ratings(
    n_users: int = 60, n_movies: int = 200, n_ratings: int = 3000, seed: int = 0
) -> pd.DataFrame:
    """Unique (user, movie) ratings in half stars, with non-contiguous ids, in shuffled order.

    Stars follow user and movie biases plus noise, so a model has something to learn.
    """
    rng = np.random.default_rng(seed)
    users = _ids(rng, FIXED_USER_IDS, n_users, 10, 1_000_000)
    movies = _ids(rng, FIXED_MOVIE_IDS, n_movies, 2, 500_000)
    cells = rng.choice(n_users * n_movies, size=min(n_ratings, n_users * n_movies), replace=False)
    user_rows, movie_rows = np.divmod(cells, n_movies)
    # Every user and movie rates / is rated at least once.
    user_rows[: min(n_users, len(cells))] = np.arange(min(n_users, len(cells)))
    movie_rows[: min(n_movies, len(cells))] = np.arange(min(n_movies, len(cells)))
    frame = pd.DataFrame({"userId": users[user_rows], "movieId": movies[movie_rows]})
    frame = frame.drop_duplicates(["userId", "movieId"]).reset_index(drop=True)
    user_bias = dict(zip(users, rng.normal(0, 0.6, n_users), strict=True))
    movie_bias = dict(zip(movies, rng.normal(0, 0.6, n_movies), strict=True))
    stars = (
        3.5
        + frame["userId"].map(user_bias)
        + frame["movieId"].map(movie_bias)
        + rng.normal(0, 0.5, len(frame))
    )
    frame["rating"] = np.clip(np.round(stars * 2) / 2, 0.5, 5.0)
    frame["timestamp"] = rng.integers(800_000_000, 1_600_000_000, len(frame))
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def _ids(rng: np.random.Generator, fixed: Sequence[int], n: int, low: int, high: int) -> np.ndarray:
    pool = np.setdiff1d(np.arange(low, high), fixed)
    drawn = rng.choice(pool, size=n - len(fixed), replace=False)
    return np.concatenate([np.array(fixed, dtype=np.int64), drawn]).astype(np.int64)


def catalogue(movie_ids: Iterable[int], extra: int = 0) -> pd.DataFrame:
    """movies.csv rows for the given ids, plus `extra` movies nobody rated (as in MovieLens).

    Titles carry commas and quotes and one movie has no genres, so CSV quoting is exercised.
    """
    ids = [int(m) for m in dict.fromkeys(movie_ids)]
    unused = max(ids, default=0) + 1
    ids += list(range(unused, unused + extra))
    genres = ["Drama|Comedy", "Action", "(no genres listed)", "Sci-Fi|Thriller|Romance"]
    return pd.DataFrame(
        {
            "movieId": ids,
            "title": [f'Movie {m}, The "Sequel" ({1950 + i % 70})' for i, m in enumerate(ids)],
            "genres": [genres[i % len(genres)] for i in range(len(ids))],
        }
    )


def write_movielens(
    folder: Path,
    ratings: pd.DataFrame | Iterable[Sequence],
    movies: pd.DataFrame | Iterable[Sequence] | None = None,
) -> Path:
    """Writes `folder/ratings.csv` and `folder/movies.csv` as MovieLens does; returns `folder`.

    `ratings` is a DataFrame or rows of (userId, movieId, rating[, timestamp]); `movies` likewise
    rows of (movieId, title, genres), by default a catalogue of every rated movie.
    """
    if not isinstance(ratings, pd.DataFrame):
        rows = [tuple(row) for row in ratings]
        width = len(rows[0]) if rows else 3
        ratings = pd.DataFrame(rows, columns=RATINGS_HEADER[:width])
    if movies is None:
        movies = catalogue(ratings["movieId"])
    elif not isinstance(movies, pd.DataFrame):
        movies = pd.DataFrame([tuple(row) for row in movies], columns=MOVIES_HEADER)
    folder.mkdir(parents=True, exist_ok=True)
    ratings.to_csv(folder / "ratings.csv", index=False)
    movies.to_csv(folder / "movies.csv", index=False)
    return folder


TASTE_GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance")


def genre_taste(
    users_per_genre: int = 30, movies_per_genre: int = 40, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ratings with a planted preference, and their catalogue: (ratings, movies).

    Each movie has one genre of `TASTE_GENRES`; each user likes one genre. A user rates about 20
    movies of their genre, 4 to 5 stars, and about 8 of the others, 1 to 3 stars. The first
    movies of every genre are blockbusters that most users rate, whatever their taste, so the
    most-rated movies are spread over all genres and popularity alone cannot tell tastes apart.
    """
    rng = np.random.default_rng(seed)
    genres = np.repeat(np.arange(len(TASTE_GENRES)), movies_per_genre)
    movie_ids = np.arange(1, len(genres) + 1)
    rows = []
    for user in range(users_per_genre * len(TASTE_GENRES)):
        taste = user % len(TASTE_GENRES)
        liked = rng.choice(np.flatnonzero(genres == taste), 20, replace=False)
        others = rng.choice(np.flatnonzero(genres != taste), 8, replace=False)
        blockbusters = np.flatnonzero(np.arange(len(genres)) % movies_per_genre < 2)
        watched = np.unique(np.concatenate([liked, others, rng.choice(blockbusters, 4, replace=False)]))
        for movie in watched:
            stars = rng.choice([4.0, 4.5, 5.0]) if genres[movie] == taste else rng.choice([1.0, 2.0, 3.0])
            rows.append(
                (user + 1, int(movie_ids[movie]), float(stars), int(rng.integers(10**9, 1.6 * 10**9)))
            )
    ratings = pd.DataFrame(rows, columns=RATINGS_HEADER).sample(frac=1, random_state=seed)
    movies = pd.DataFrame(
        {
            "movieId": movie_ids,
            "title": [f"{TASTE_GENRES[g]} Movie {i} ({1980 + i % 40})" for i, g in enumerate(genres)],
            "genres": [TASTE_GENRES[g] for g in genres],
        }
    )
    return ratings.reset_index(drop=True), movies
