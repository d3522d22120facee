"""Looking at model folders and bundles: fingerprints, copies, and the seed's way to rank."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from app.bundle import RANKING_OUTPUT, RATING_OUTPUT, Bundle


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(model_dir: Path) -> dict:
    """Where `current` points and the SHA-256 of every file (hidden ones too) of a model folder."""
    link = model_dir / "current"
    files = {
        str(path.relative_to(model_dir)): sha256_of(path)
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
    entries = sorted(p.name for p in model_dir.iterdir())
    return {"current": os.readlink(link) if link.is_symlink() else None, "entries": entries, "files": files}


def expected_top(
    bundle: Bundle, user_id: int, k: int, rank_by: str = RANKING_OUTPUT
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The k best unrated movies by `model.predict` over the whole catalogue, as the seed does,
    ordered by the `rank_by` output: (movie ids, predicted stars, ranking scores)."""
    row = bundle.encoders.users.index(user_id)
    n_movies = len(bundle.encoders.movies)
    pairs = np.stack([np.full(n_movies, row), np.arange(n_movies)], axis=1).astype(np.int32)
    outputs = {
        name: values.reshape(-1).astype(np.float64)
        for name, values in bundle.model.predict(pairs, verbose=0).items()
    }
    order = outputs[rank_by].copy()
    order[bundle.ratings.of(row)[0]] = -np.inf
    best = np.argsort(-order, kind="stable")[:k]
    stars = bundle.encoders.to_stars(outputs[RATING_OUTPUT][best])
    return [bundle.encoders.movies[i] for i in best], stars, outputs[RANKING_OUTPUT][best]


def drop_last_movies(folder: Path, n: int) -> None:
    """Rewrites encoders, catalogue and ratings as if the data set had `n` movies fewer, leaving
    the model's tables as trained: every file consistent with the others but the model."""
    encoders = json.loads((folder / "encoders.json").read_text())
    keep = len(encoders["movies"]) - n
    encoders["movies"] = encoders["movies"][:keep]
    (folder / "encoders.json").write_text(json.dumps(encoders))
    catalogue = json.loads((folder / "movies.json").read_text())
    catalogue = {key: values[:keep] for key, values in catalogue.items()}
    (folder / "movies.json").write_text(json.dumps(catalogue))
    with np.load(folder / "ratings.npz") as stored:
        indptr, movies, ratings = stored["indptr"], stored["movies"], stored["ratings"]
    owners = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    kept = movies < keep
    counts = np.bincount(owners[kept], minlength=len(indptr) - 1)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    np.savez(folder / "ratings.npz", indptr=indptr, movies=movies[kept], ratings=ratings[kept])


def reverse_users(folder: Path) -> None:
    """encoders.json with the same users in reverse order: every user would get another's list."""
    encoders = json.loads((folder / "encoders.json").read_text())
    encoders["users"].reverse()
    (folder / "encoders.json").write_text(json.dumps(encoders))


def shift_ratings(folder: Path, logit: float = 1.0) -> None:
    """Rewrites a bundle's model with every movie bias raised by `logit` (and its manifest): other
    weights, so an answer computed on this bundle differs from one computed on the original."""
    import keras

    from app.bundle import MODEL_FILE, write_manifest

    model = keras.saving.load_model(folder / MODEL_FILE)
    for layer in model.layers:
        if layer.name.endswith("movie_bias"):
            layer.embeddings.assign(layer.embeddings + logit)
    model.save(folder / MODEL_FILE)
    write_manifest(folder)
