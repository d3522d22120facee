"""The bundle: the one contract between training and serving.

Training writes a bundle with `write_bundle`; the server reads it with `load_bundle`. Both sides
import this module and nothing else of each other, so the file names, the encoders' format and
the `FORMAT_VERSION` live here once. A bundle is written under a hidden temporary name, renamed
into place and only then published by switching the `current` symlink, so a reader never sees
half a bundle and a failed run leaves `current` as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMAT_VERSION = 1
CURRENT = "current"
MODEL_FILE = "model.keras"
ENCODERS_FILE = "encoders.json"
METADATA_FILE = "metadata.json"
CATALOGUE_FILE = "movies.json"
RATINGS_FILE = "ratings.npz"
LOSS_PLOT_FILE = "loss.png"
REQUIRED_FILES = (MODEL_FILE, ENCODERS_FILE, METADATA_FILE, CATALOGUE_FILE, RATINGS_FILE)
TEMP_PREFIX = ".incomplete-"
WRITER_LOCK = ".writer.lock"
MEMBER_ROLES = ("user_embedding", "movie_embedding", "user_bias", "movie_bias")
M = TypeVar("M", bound="BaseModel")
HOW_TO_MAKE_ONE = "make one with: python -m training --model-dir DIR (see README, Training)"


class BundleError(Exception):
    """A bundle is missing, incomplete or corrupt; the message names the file and the fix."""


class Encoders(BaseModel):
    """Maps MovieLens ids to embedding rows and sigmoid scores back to stars."""

    users: list[int] = Field(description="userId at embedding row 0, 1, ...")
    movies: list[int] = Field(description="movieId at embedding row 0, 1, ...")
    rating_min: float
    rating_max: float

    @model_validator(mode="after")
    def _check(self) -> Encoders:
        if not self.users or not self.movies:
            raise ValueError("users and movies must not be empty")
        if len(set(self.users)) != len(self.users) or len(set(self.movies)) != len(self.movies):
            raise ValueError("ids must be unique")
        if not self.rating_min < self.rating_max:
            raise ValueError("rating_min must be below rating_max")
        return self

    def to_stars(self, scores: np.ndarray) -> np.ndarray:
        """Sigmoid scores in [0, 1] to stars on the data set's scale."""
        return self.rating_min + scores * (self.rating_max - self.rating_min)

    def to_scores(self, stars: np.ndarray) -> np.ndarray:
        """Stars to the [0, 1] targets the model is trained on."""
        return (stars - self.rating_min) / (self.rating_max - self.rating_min)


class Catalogue(BaseModel):
    """Title and genres of every movie, aligned with `Encoders.movies`."""

    titles: list[str]
    genres: list[list[str]]


class Metadata(BaseModel):
    """What a bundle says about itself; training adds metrics, history and the rest as extras."""

    model_config = ConfigDict(extra="allow")

    version: str = Field(
        description="Version name: UTC creation time and process id", examples=["20261129T055109519036Z-4350"]
    )
    created_at: datetime = Field(
        description="When training wrote the bundle", examples=["2026-11-29T05:51:09Z"]
    )
    format_version: int = Field(description="Bundle format this server reads", examples=[FORMAT_VERSION])


@dataclass(frozen=True)
class UserRatings:
    """Every rating of every user, as CSR rows: user row u owns `movies[indptr[u]:indptr[u+1]]`.

    Kept as three flat arrays because a dict of lists for 25 million ratings would cost
    gigabytes and seconds to load; these load with one `np.load`.
    """

    indptr: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray

    @classmethod
    def from_pairs(
        cls, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, n_users: int
    ) -> UserRatings:
        """Groups (user row, movie row, stars) triples by user, vectorised."""
        order = np.argsort(users, kind="stable")
        counts = np.bincount(users, minlength=n_users)
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr, movies[order].astype(np.int32), ratings[order].astype(np.float32))

    def of(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The movie rows a user rated and the stars given, in the order stored."""
        start, end = self.indptr[user], self.indptr[user + 1]
        return self.movies[start:end], self.ratings[start:end]


@dataclass(frozen=True)
class Bundle:
    """Everything the server needs, loaded and checked."""

    path: Path
    model: Any
    encoders: Encoders
    metadata: Metadata
    catalogue: Catalogue
    ratings: UserRatings

    @property
    def version(self) -> str:
        return self.metadata.version


def member_layer_name(member: int, role: str) -> str:
    """The name of a member's layer in `model.keras`.

    Part of the contract: the server finds each member's tables by these names to score a user
    against the whole catalogue in one matrix product with the trained weights.
    """
    return f"member{member}_{role}"


def new_version(now: datetime | None = None) -> str:
    """A version name that sorts by creation time and is unique per process."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%fZ}-{os.getpid()}"


def write_bundle(
    model_dir: Path,
    *,
    model: Any,
    encoders: Encoders,
    metadata: Metadata,
    catalogue: Catalogue,
    ratings: UserRatings,
    write_extras: Callable[[Path], None] | None = None,
    keep: int = 3,
) -> Path:
    """Writes a complete bundle, publishes it as `current`, then prunes old versions.

    Every file goes into a hidden temporary folder first; only a finished folder is renamed to
    its version name, and only then is `current` switched, by replacing the symlink in one
    `os.replace`. A crash at any point leaves `current` pointing where it did.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_temporaries(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{metadata.version}-", dir=model_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; servers may run as another user
    try:
        with _writer_lock(staging):
            model.save(staging / MODEL_FILE)
            _write_json(staging / ENCODERS_FILE, encoders.model_dump())
            _write_json(staging / CATALOGUE_FILE, catalogue.model_dump())
            _write_json(staging / METADATA_FILE, metadata.model_dump(mode="json"))
            with open(staging / RATINGS_FILE, "wb") as handle:
                np.savez(handle, indptr=ratings.indptr, movies=ratings.movies, ratings=ratings.ratings)
            if write_extras is not None:
                write_extras(staging)
            (staging / WRITER_LOCK).unlink()  # still locked through the open handle until renamed
            _fsync_tree(staging)
            final = model_dir / metadata.version
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish(model_dir, final.name)
    prune_versions(model_dir, keep=keep)
    return final


def publish(model_dir: Path, version: str) -> None:
    """Points `model_dir/current` at a version folder atomically (symlink swapped by rename)."""
    link = model_dir / f".{CURRENT}.{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(version, target_is_directory=True)
    os.replace(link, model_dir / CURRENT)
    _fsync_dir(model_dir)


def current_bundle_path(model_dir: Path) -> Path:
    """The version folder that `current` points at, resolved once so a swap mid-load is harmless."""
    link = model_dir / CURRENT
    if not link.exists():
        raise BundleError(f"no bundle at {link}: {HOW_TO_MAKE_ONE}")
    return link.resolve()


def version_folders(model_dir: Path) -> list[Path]:
    """Published version folders, oldest first."""
    if not model_dir.is_dir():
        return []
    found = [
        p for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    ]
    return sorted(found, key=lambda p: p.name)


def prune_versions(model_dir: Path, keep: int) -> list[Path]:
    """Removes all but the newest `keep` versions; never the one `current` points at."""
    current = (model_dir / CURRENT).resolve() if (model_dir / CURRENT).exists() else None
    removable = [p for p in version_folders(model_dir) if p.resolve() != current]
    kept_besides_current = max(keep - (1 if current else 0), 0)
    doomed = removable[: max(len(removable) - kept_besides_current, 0)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def remove_abandoned_temporaries(model_dir: Path) -> None:
    """Deletes the staging folders of runs that died mid-write (SIGKILL, power loss).

    A writer holds an exclusive lock on its staging folder's lock file for as long as it writes;
    the kernel drops the lock when the process dies, however it dies. A folder whose lock can be
    taken is therefore abandoned. (Process ids would not do: in containers every run is pid 1.)
    """
    for path in model_dir.glob(f"{TEMP_PREFIX}*"):
        try:
            handle = open(path / WRITER_LOCK, "rb")  # noqa: SIM115 - held while deciding
        except OSError:
            continue  # just created, or renamed away: not ours to judge
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _writer_lock(staging: Path) -> Iterator[None]:
    """Marks a staging folder as being written, until the block ends or the process dies."""
    with open(staging / WRITER_LOCK, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def load_bundle(path: Path) -> Bundle:
    """Loads and checks a bundle folder; any defect raises `BundleError` naming the file."""
    import keras  # imported here so that reading metadata alone stays cheap

    if not path.is_dir():
        raise BundleError(f"no bundle at {path}: {HOW_TO_MAKE_ONE}")
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise BundleError(f"{path / name} is missing: the bundle is incomplete; {HOW_TO_MAKE_ONE}")
    metadata = _read_model(path / METADATA_FILE, Metadata)
    if metadata.format_version != FORMAT_VERSION:
        raise BundleError(
            f"{path / METADATA_FILE}: format_version {metadata.format_version}, this server reads "
            f"{FORMAT_VERSION}; {HOW_TO_MAKE_ONE}"
        )
    encoders = _read_model(path / ENCODERS_FILE, Encoders)
    catalogue = _read_model(path / CATALOGUE_FILE, Catalogue)
    if not len(catalogue.titles) == len(catalogue.genres) == len(encoders.movies):
        raise BundleError(
            f"{path / CATALOGUE_FILE}: does not list every movie in {ENCODERS_FILE}; {HOW_TO_MAKE_ONE}"
        )
    ratings = _read_ratings(path / RATINGS_FILE, encoders)
    try:
        model = keras.saving.load_model(path / MODEL_FILE, safe_mode=True)
    except Exception as error:
        raise BundleError(f"{path / MODEL_FILE} cannot be loaded ({error}); {HOW_TO_MAKE_ONE}") from error
    _check_model(path / MODEL_FILE, model, encoders)
    return Bundle(path, model, encoders, metadata, catalogue, ratings)


def read_metadata(path: Path) -> Metadata:
    """Only the metadata of a bundle folder (cheap: no model load)."""
    return _read_model(path / METADATA_FILE, Metadata)


def _read_model(path: Path, kind: type[M]) -> M:
    try:
        return kind.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as error:
        reason = str(error).splitlines()[0] if isinstance(error, OSError) else _first_error(error)
        raise BundleError(f"{path} is unreadable or corrupt ({reason}); {HOW_TO_MAKE_ONE}") from error


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    return f"{where}: {first['msg']}"


def _read_ratings(path: Path, encoders: Encoders) -> UserRatings:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            ratings = UserRatings(arrays["indptr"], arrays["movies"], arrays["ratings"])
    except Exception as error:
        raise BundleError(f"{path} is unreadable or corrupt ({error}); {HOW_TO_MAKE_ONE}") from error
    sound = (
        ratings.indptr.shape == (len(encoders.users) + 1,)
        and ratings.indptr[0] == 0
        and ratings.indptr[-1] == len(ratings.movies) == len(ratings.ratings)
        and bool(np.all(np.diff(ratings.indptr) >= 0))
        and (
            len(ratings.movies) == 0
            or 0 <= ratings.movies.min() <= ratings.movies.max() < len(encoders.movies)
        )
    )
    if not sound:
        raise BundleError(f"{path} does not match {ENCODERS_FILE}; {HOW_TO_MAKE_ONE}")
    return ratings


def _check_model(path: Path, model: Any, encoders: Encoders) -> None:
    """Checks the model takes (N, 2) index pairs, returns (N, 1) and knows every encoded id."""
    probe = np.array([[0, 0], [len(encoders.users) - 1, len(encoders.movies) - 1]], dtype=np.int32)
    try:
        scores = np.asarray(model.predict_on_batch(probe))
    except Exception as error:
        raise BundleError(
            f"{path} does not score [user, movie] pairs ({error}); {HOW_TO_MAKE_ONE}"
        ) from error
    if scores.shape != (2, 1) or not np.all(np.isfinite(scores)):
        raise BundleError(f"{path} returns {scores.shape}, expected (N, 1) scores; {HOW_TO_MAKE_ONE}")


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
