"""Shared test fixtures: generated MovieLens-shaped data, one tiny trained bundle, the real data.

Everything but the real-data tests runs on small data generated here, in temporary folders.
Training happens once per session (`tiny_model_dir`); tests that change a model folder work on a
copy of it (`model_dir_copy`). The real MovieLens copy comes from `MOVIELENS_DIR` (a folder or a
`.zip`; a relative path is taken from the repository root, then the working directory); without
it the real-data tests are skipped with the reason.

Helpers are plain functions and are also handed out as fixtures of the same name, so tests use
them without importing this module.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

# Small enough that a run takes a few seconds on two cores.
TINY_FLAGS = ("--epochs", "1", "--embedding-dim", "8", "--verbose", "0")
TINY_MEMBERS = 2

# Ids a contiguous 0..n-1 encoding would get wrong: gaps, large values, out of order.
FIXED_USER_IDS = (7, 1003, 99999)
FIXED_MOVIE_IDS = (1, 99999, 123_456_789)

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


def train(data_dir: Path | str, model_dir: Path | str, *flags: str) -> int:
    """`python -m training` in this process with the tiny settings; later flags win."""
    from training.cli import main

    argv = ["--data-dir", str(data_dir), "--model-dir", str(model_dir), "--members", str(TINY_MEMBERS)]
    return main([*argv, *TINY_FLAGS, *flags])


def snapshot(model_dir: Path) -> dict:
    """Where `current` points and the SHA-256 of every file (hidden ones too) of a model folder."""
    link = model_dir / "current"
    files = {
        str(path.relative_to(model_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
    entries = sorted(p.name for p in model_dir.iterdir())
    return {"current": os.readlink(link) if link.is_symlink() else None, "entries": entries, "files": files}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(name="random_ratings", scope="session")
def _random_ratings_fixture():
    return random_ratings


@pytest.fixture(name="catalogue", scope="session")
def _catalogue_fixture():
    return catalogue


@pytest.fixture(name="write_movielens", scope="session")
def _write_movielens_fixture():
    return write_movielens


@pytest.fixture(name="train", scope="session")
def _train_fixture():
    return train


@pytest.fixture(name="snapshot", scope="session")
def _snapshot_fixture():
    return snapshot


@pytest.fixture(scope="session")
def tiny_ratings() -> pd.DataFrame:
    """The ratings behind `tiny_model_dir`, as written to its ratings.csv."""
    return random_ratings()


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, tiny_ratings) -> Path:
    """A MovieLens-shaped folder (ratings.csv, movies.csv with a few unrated movies)."""
    folder = tmp_path_factory.mktemp("tiny-data")
    return write_movielens(folder, tiny_ratings, catalogue(tiny_ratings["movieId"], extra=5))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_data_dir) -> Path:
    """A model folder with one bundle published as `current`: trained once per session, 2 members.

    Shared by every test: do not modify it; use `model_dir_copy` for that.
    """
    model_dir = tmp_path_factory.mktemp("tiny-models")
    status = train(tiny_data_dir, model_dir)
    assert status == 0, "training the session's tiny bundle failed (see captured stderr)"
    return model_dir


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model_dir) -> Path:
    """The version folder that the tiny model folder's `current` points at."""
    return (tiny_model_dir / "current").resolve()


@pytest.fixture
def model_dir_copy(tmp_path, tiny_model_dir) -> Path:
    """A private copy of the tiny model folder, `current` still a relative symlink."""
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy, symlinks=True)
    return copy


@pytest.fixture(scope="session")
def oracle():
    """`expected_top(bundle, user_id, k)`: the k best unrated movies by `model.predict` over the
    whole catalogue (the seed's way), as (movie ids, predicted stars)."""

    def expected_top(bundle, user_id, k):
        row = bundle.encoders.users.index(user_id)
        n_movies = len(bundle.encoders.movies)
        pairs = np.stack([np.full(n_movies, row), np.arange(n_movies)], axis=1).astype(np.int32)
        stars = bundle.encoders.to_stars(
            bundle.model.predict(pairs, verbose=0).reshape(-1).astype(np.float64)
        )
        stars[bundle.ratings.of(row)[0]] = -np.inf
        best = np.argsort(-stars, kind="stable")[:k]
        return [bundle.encoders.movies[i] for i in best], stars[best]

    return expected_top


def _movielens_path() -> tuple[Path | None, str]:
    value = os.environ.get("MOVIELENS_DIR")
    if not value:
        return None, "MOVIELENS_DIR is not set (point it at ml-latest-small, a folder or .zip)"
    given = Path(value).expanduser()
    candidates = [given] if given.is_absolute() else [REPO / given, Path.cwd() / given]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve(), ""
    return None, f"MOVIELENS_DIR={value} does not exist (tried {', '.join(map(str, candidates))})"


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The real MovieLens data from `MOVIELENS_DIR` (folder or .zip), else the test is skipped."""
    path, reason = _movielens_path()
    if path is None:
        pytest.skip(f"real MovieLens data unavailable: {reason}")
    return path


@pytest.fixture(scope="session")
def movielens_folder(movielens_dir) -> Path:
    """The real data as a folder: `MOVIELENS_DIR` itself, or the folder beside its .zip."""
    folder = movielens_dir if movielens_dir.is_dir() else movielens_dir.with_suffix("")
    if not (folder / "ratings.csv").is_file():
        pytest.skip(f"no MovieLens folder at {folder}")
    return folder


@pytest.fixture(scope="session")
def movielens_zip(movielens_dir) -> Path:
    """The real data as a .zip: `MOVIELENS_DIR` itself, or `<folder>.zip` beside the folder."""
    archive = (
        movielens_dir if movielens_dir.is_file() else movielens_dir.with_name(f"{movielens_dir.name}.zip")
    )
    if not archive.is_file():
        pytest.skip(f"no MovieLens archive at {archive}")
    return archive
