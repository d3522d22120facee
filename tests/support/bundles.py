"""Looking at model folders and bundles: fingerprints, copies, and the seed's way to rank."""

from __future__ import annotations

import hashlib
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
