"""The bundle format: the one contract between training and serving.

Training writes a bundle's files with `write_bundle_files`; the server reads them with
`load_bundle`. Both sides import this module and nothing else of each other, so the file names,
the encoders' format and the `FORMAT_VERSION` live here once, the writer beside the reader.
Where bundles live and how a new one is published atomically is `app.bundle_store`'s job.

Every file of a bundle is bound to the others by `manifest.json`, written last: the size and
SHA-256 of each file. The reader checks it before it reads anything else, so a file changed, cut
short or swapped in from another run (an `encoders.json` listing the same users in another
order, say) is refused, and then checks that the encoders and the model's tables agree in size.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# 3: manifest.json required; 2: the model has `rating` and `ranking` outputs; 1: one output for both
FORMAT_VERSION = 3
READABLE_FORMATS = (1, 2, 3)
MANIFESTED_FORMAT = 3  # from this format on, a bundle without a manifest is refused
MODEL_FILE = "model.keras"
ENCODERS_FILE = "encoders.json"
METADATA_FILE = "metadata.json"
CATALOGUE_FILE = "movies.json"
RATINGS_FILE = "ratings.npz"
LOSS_PLOT_FILE = "loss.png"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (MODEL_FILE, ENCODERS_FILE, METADATA_FILE, CATALOGUE_FILE, RATINGS_FILE)
MEMBER_ROLES = ("user_embedding", "movie_embedding", "user_bias", "movie_bias")
# The model's two outputs, by name, and the layers of its ranking tables (see `app.scoring`).
RATING_OUTPUT = "rating"
RANKING_OUTPUT = "ranking"
RANKING_USER_LAYER = "ranking_user_embedding"
RANKING_MOVIE_LAYER = "ranking_movie_embedding"
RANKING_SCALE_LAYER = "ranking_movie_scale"
Document = TypeVar("Document", bound=BaseModel)
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


class FoldIn(BaseModel):
    """How the server fits a user it folds in (`app.fold_in`), chosen by training."""

    rating_l2: float = Field(
        description="L2 pull, per rating, of a member's user vector towards zero (the per-example "
        "penalty training used)",
        examples=[0.003],
    )
    bias_l2: float = Field(
        default=0.1,
        description="L2 pull of a member's user bias towards zero, whatever the number of ratings",
        examples=[0.1],
    )


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
    fold_in: FoldIn = Field(
        default=FoldIn(rating_l2=0.003),
        description="How users known only through stored ratings are fitted (older bundles: the default)",
    )


class ManifestEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(BaseModel):
    """The size and SHA-256 of every file of a bundle, by name; written after all of them."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, ManifestEntry]


@dataclass(frozen=True)
class RatingsByUser:
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
    ) -> RatingsByUser:
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
    ratings: RatingsByUser

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


def write_bundle_files(
    folder: Path,
    *,
    model: Any,
    encoders: Encoders,
    metadata: Metadata,
    catalogue: Catalogue,
    ratings: RatingsByUser,
) -> None:
    """Writes every required file of a bundle into `folder` (a staging folder: see bundle_store)."""
    model.save(folder / MODEL_FILE)
    _write_json(folder / ENCODERS_FILE, encoders.model_dump())
    _write_json(folder / CATALOGUE_FILE, catalogue.model_dump())
    _write_json(folder / METADATA_FILE, metadata.model_dump(mode="json"))
    with open(folder / RATINGS_FILE, "wb") as handle:
        np.savez(handle, indptr=ratings.indptr, movies=ratings.movies, ratings=ratings.ratings)


def write_manifest(folder: Path) -> None:
    """Writes `manifest.json`: the size and SHA-256 of every other file in `folder` (hidden ones
    aside). Call it once every file is written: `app.bundle_store.publish_bundle` does."""
    files = {
        path.name: ManifestEntry(bytes=path.stat().st_size, sha256=_sha256(path))
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != MANIFEST_FILE and not path.name.startswith(".")
    }
    _write_json(folder / MANIFEST_FILE, Manifest(files=files).model_dump())


def load_bundle(path: Path) -> Bundle:
    """Loads and checks a bundle folder; any defect raises `BundleError` naming the file."""
    import keras  # imported here so that reading metadata alone stays cheap

    try:
        if not path.is_dir():
            raise BundleError(f"no bundle at {path}: {HOW_TO_MAKE_ONE}")
        for name in REQUIRED_FILES:
            if not (path / name).is_file():
                raise BundleError(f"{path / name} is missing: the bundle is incomplete; {HOW_TO_MAKE_ONE}")
        manifested = _check_manifest(path)
    except OSError as error:  # a folder or file this process may not read
        raise BundleError(f"{path} cannot be read ({error.strerror or error}); {HOW_TO_MAKE_ONE}") from error
    metadata = _read_document(path / METADATA_FILE, Metadata)
    if metadata.format_version not in READABLE_FORMATS:
        raise BundleError(
            f"{path / METADATA_FILE}: format_version {metadata.format_version}, this server reads "
            f"{', '.join(map(str, READABLE_FORMATS))}; {HOW_TO_MAKE_ONE}"
        )
    if metadata.format_version >= MANIFESTED_FORMAT and not manifested:
        raise BundleError(f"{path / MANIFEST_FILE} is missing: the bundle is incomplete; {HOW_TO_MAKE_ONE}")
    encoders = _read_document(path / ENCODERS_FILE, Encoders)
    catalogue = _read_document(path / CATALOGUE_FILE, Catalogue)
    if not len(catalogue.titles) == len(catalogue.genres) == len(encoders.movies):
        raise BundleError(
            f"{path / CATALOGUE_FILE}: does not list every movie in {ENCODERS_FILE}; {HOW_TO_MAKE_ONE}"
        )
    # The model before the ratings: Keras holds the whole weights file in memory while it loads
    # (as large as the tables), and the ratings (as large again at ml-25m's size) are better read
    # once that copy is gone: the load's peak is then the model's, not the model's plus theirs.
    try:
        model = keras.saving.load_model(path / MODEL_FILE, safe_mode=True)
    except Exception as error:
        raise BundleError(f"{path / MODEL_FILE} cannot be loaded ({error}); {HOW_TO_MAKE_ONE}") from error
    _check_tables(path, model, encoders)
    _check_model(path / MODEL_FILE, model, encoders)
    ratings = _read_ratings(path / RATINGS_FILE, encoders)
    return Bundle(path, model, encoders, metadata, catalogue, ratings)


def read_metadata(path: Path) -> Metadata:
    """Only the metadata of a bundle folder (cheap: no model load)."""
    return _read_document(path / METADATA_FILE, Metadata)


def _check_manifest(path: Path) -> bool:
    """Checks every file the manifest lists against its size and SHA-256; False without one."""
    if not (path / MANIFEST_FILE).is_file():
        return False
    manifest = _read_document(path / MANIFEST_FILE, Manifest)
    unlisted = [name for name in REQUIRED_FILES if name not in manifest.files]
    if unlisted:
        raise BundleError(f"{path / MANIFEST_FILE} does not list {unlisted[0]}; {HOW_TO_MAKE_ONE}")
    for name, entry in manifest.files.items():
        file = path / name
        if Path(name).name != name or name.startswith(".") or not file.is_file():
            raise BundleError(f"{path / MANIFEST_FILE} lists {name!r}, not in the bundle; {HOW_TO_MAKE_ONE}")
        if file.stat().st_size != entry.bytes or _sha256(file) != entry.sha256:
            raise BundleError(
                f"{file} is not the file {MANIFEST_FILE} lists (size or SHA-256 differ): changed or "
                f"replaced after it was written; {HOW_TO_MAKE_ONE}"
            )
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_document(path: Path, kind: type[Document]) -> Document:
    try:
        return kind.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as error:
        reason = str(error).splitlines()[0] if isinstance(error, OSError) else _first_error(error)
        raise BundleError(f"{path} is unreadable or corrupt ({reason}); {HOW_TO_MAKE_ONE}") from error


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    return f"{where}: {first['msg']}"


def _read_ratings(path: Path, encoders: Encoders) -> RatingsByUser:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            ratings = RatingsByUser(arrays["indptr"], arrays["movies"], arrays["ratings"])
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


def _check_tables(path: Path, model: Any, encoders: Encoders) -> None:
    """Checks the model has the members' tables the server scores with, each with a row per
    encoded user or movie: an `encoders.json` of another run must not be served with it."""
    layers = {layer.name: layer for layer in model.layers}
    if member_layer_name(0, "user_embedding") not in layers:
        raise BundleError(
            f"{path / MODEL_FILE} has no layer named {member_layer_name(0, 'user_embedding')!r}: not a "
            f"model this server can score; {HOW_TO_MAKE_ONE}"
        )
    expected = {}
    member = 0
    while member_layer_name(member, "user_embedding") in layers:
        for role in MEMBER_ROLES:
            expected[member_layer_name(member, role)] = "users" if role.startswith("user") else "movies"
        member += 1
    expected.update(
        {RANKING_USER_LAYER: "users", RANKING_MOVIE_LAYER: "movies", RANKING_SCALE_LAYER: "movies"}
        if RANKING_USER_LAYER in layers
        else {}
    )
    sizes = {"users": len(encoders.users), "movies": len(encoders.movies)}
    for name, kind in expected.items():
        table = getattr(layers.get(name), "embeddings", None)
        rows = None if table is None else int(table.shape[0])
        if rows != sizes[kind]:
            found = "no such table" if rows is None else f"{rows} rows"
            raise BundleError(
                f"{path / ENCODERS_FILE} does not match {path / MODEL_FILE}: it lists {sizes[kind]} "
                f"{kind}, the model's layer {name!r} has {found}; {HOW_TO_MAKE_ONE}"
            )


def _check_model(path: Path, model: Any, encoders: Encoders) -> None:
    """Checks the model takes (N, 2) index pairs, returns (N, 1) outputs (`rating` and `ranking`,
    or one for both) and knows every encoded id."""
    probe = np.array([[0, 0], [len(encoders.users) - 1, len(encoders.movies) - 1]], dtype=np.int32)
    try:
        outputs = model.predict_on_batch(probe)
    except Exception as error:
        raise BundleError(
            f"{path} does not score [user, movie] pairs ({error}); {HOW_TO_MAKE_ONE}"
        ) from error
    named = outputs if isinstance(outputs, dict) else {RATING_OUTPUT: outputs, RANKING_OUTPUT: outputs}
    for name in (RATING_OUTPUT, RANKING_OUTPUT):
        scores = np.asarray(named.get(name))
        if scores.shape != (2, 1) or not np.all(np.isfinite(scores)):
            raise BundleError(
                f"{path}: output {name!r} is {scores.shape}, expected finite (N, 1) scores; {HOW_TO_MAKE_ONE}"
            )


def _write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
