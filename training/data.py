"""Finding, reading and checking MovieLens ratings.

A data source is a folder holding `ratings.csv` and `movies.csv`, or a MovieLens `.zip`, which is
read in place (nothing is extracted, so a read-only copy works and nothing is unpacked twice).
Without one, `MOVIELENS_DIR` names it; without that, the official archive is downloaded once into
a cache by `keras.utils.get_file`, which checks its SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
MOVIELENS_SHA256 = "0c0f69c19705de3f5b6888e18785c83ef856c2f8daa4f9013d807cd9264f81fd"
RATING_RANGE = (0.5, 5.0)
RATINGS_COLUMNS = ("userId", "movieId", "rating")
MOVIES_COLUMNS = ("movieId", "title", "genres")


class DataError(Exception):
    """The ratings cannot be used; the message says which file and why, in one line."""


@dataclass(frozen=True)
class MovieLens:
    """Ratings and the catalogue, as read and checked."""

    ratings: pd.DataFrame  # userId int64, movieId int64, rating float32, in file order
    movies: pd.DataFrame  # movieId int64, title str, genres str ("A|B"), indexed by movieId
    source: str  # the folder or archive name only: metadata is served, paths are not
    sha256: str


def resolve_source(data_dir: str | None, cache_dir: Path | None = None) -> Path:
    """The folder or archive to read: the flag, else `MOVIELENS_DIR`, else the download."""
    chosen = data_dir or os.environ.get("MOVIELENS_DIR")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.exists():
            raise DataError(f"{path} does not exist: pass a folder with ratings.csv or a .zip")
        return path
    return download(cache_dir or default_cache_dir())


def default_cache_dir() -> Path:
    return Path(os.environ.get("MOVIELENS_CACHE_DIR", Path.home() / ".cache" / "movielens"))


def download(cache_dir: Path) -> Path:
    """Downloads the official archive once (progress bar, checksum) and returns its path."""
    import keras

    try:
        return Path(
            keras.utils.get_file(
                fname="ml-latest-small.zip",
                origin=MOVIELENS_URL,
                file_hash=MOVIELENS_SHA256,
                cache_dir=str(cache_dir),
                cache_subdir=".",
            )
        )
    except Exception as error:
        raise DataError(
            f"could not download {MOVIELENS_URL} ({_one_line(error)}); without network, pass "
            "--data-dir with a MovieLens folder or .zip, or set MOVIELENS_DIR"
        ) from error


def load(source: Path) -> MovieLens:
    """Reads and checks ratings and movies from a folder or a `.zip`."""
    with ExitStack() as stack:
        open_member = _folder_opener(source) if source.is_dir() else _archive_opener(source, stack)
        ratings = _read_ratings(open_member("ratings.csv"))
        movies = _read_movies(open_member("movies.csv"))
    _check_catalogue_covers(ratings, movies)
    return MovieLens(ratings, movies, source.name, fingerprint(source))


def fingerprint(source: Path) -> str:
    """SHA-256 of the archive, or of ratings.csv then movies.csv for a folder."""
    digest = hashlib.sha256()
    files = [source] if source.is_file() else [source / "ratings.csv", source / "movies.csv"]
    for path in files:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _folder_opener(folder: Path):
    def open_member(name: str) -> tuple[str, IO[bytes]]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path} is missing: a data folder holds ratings.csv and movies.csv")
        return str(path), open(path, "rb")

    return open_member


def _archive_opener(archive: Path, stack: ExitStack):
    try:
        zipped = stack.enter_context(zipfile.ZipFile(archive))
        names = zipped.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{archive} is not a readable zip archive ({_one_line(error)})") from error

    def open_member(name: str) -> tuple[str, IO[bytes]]:
        matches = [n for n in names if n == name or n.endswith(f"/{name}")]
        if not matches:
            raise DataError(f"{archive} holds no {name}: is it a MovieLens archive?")
        member = min(matches, key=len)
        return f"{archive}:{member}", stack.enter_context(zipped.open(member))

    return open_member


def _read_csv(
    opened: tuple[str, IO[bytes]], columns: tuple[str, ...], numeric: tuple[str, ...]
) -> tuple[str, pd.DataFrame]:
    """Reads the named columns, numbers as float64 so that 25 million rows stay compact."""
    name, handle = opened
    dtypes = {column: "float64" if column in numeric else "string" for column in columns}
    try:
        with handle:
            # index_col=False: a first row with more fields than the header must not turn the
            # first column into the index and shift every value one column to the left.
            frame = pd.read_csv(handle, dtype=dtypes, usecols=lambda c: c in columns, index_col=False)
    except pd.errors.EmptyDataError as error:
        raise DataError(f"{name} is empty") from error
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as error:
        raise DataError(f"{name} is not valid MovieLens CSV ({_one_line(error)})") from error
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{name} lacks the column(s) {', '.join(missing)}")
    if frame.empty:
        raise DataError(f"{name} has a header but no rows")
    return name, frame


def _first_bad_row(name: str, column: pd.Series, bad: pd.Series, expected: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{name}: {column.name} {column.iloc[row]} on data row {row + 1} is not {expected}")


def _integer_ids(name: str, column: pd.Series) -> pd.Series:
    bad = column.isna() | (column != np.floor(column)) | (column.abs() > 2**53)
    _first_bad_row(name, column, bad, "an integer id")
    return column.astype(np.int64)


def _read_ratings(opened: tuple[str, IO[bytes]]) -> pd.DataFrame:
    name, frame = _read_csv(opened, RATINGS_COLUMNS, numeric=RATINGS_COLUMNS)
    low, high = RATING_RANGE
    stars = frame["rating"]
    _first_bad_row(
        name, stars, stars.isna() | (stars < low) | (stars > high), f"a rating from {low} to {high}"
    )
    if stars.min() == stars.max():
        raise DataError(f"{name}: every rating is {stars.iloc[0]}; scaling needs two different ratings")
    return pd.DataFrame(
        {
            "userId": _integer_ids(name, frame["userId"]),
            "movieId": _integer_ids(name, frame["movieId"]),
            "rating": stars.astype(np.float32),
        }
    )


def _read_movies(opened: tuple[str, IO[bytes]]) -> pd.DataFrame:
    name, frame = _read_csv(opened, MOVIES_COLUMNS, numeric=("movieId",))
    movies = pd.DataFrame(
        {
            "movieId": _integer_ids(name, frame["movieId"]),
            "title": frame["title"].fillna("").astype(str),
            "genres": frame["genres"].fillna("(no genres listed)").astype(str),
        }
    )
    duplicated = movies["movieId"].duplicated()
    if duplicated.any():
        raise DataError(f"{name}: movieId {movies.loc[duplicated, 'movieId'].iloc[0]} is listed twice")
    return movies.set_index("movieId", drop=False)


def _check_catalogue_covers(ratings: pd.DataFrame, movies: pd.DataFrame) -> None:
    unknown = ~ratings["movieId"].isin(movies.index)
    if unknown.any():
        example = ratings.loc[unknown, "movieId"].iloc[0]
        raise DataError(
            f"ratings.csv rates {int(unknown.sum())} time(s) movies absent from movies.csv "
            f"(movieId {example}, for one)"
        )


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
