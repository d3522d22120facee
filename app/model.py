"""A loaded bundle made ready to serve: id lookups, per-movie statistics and batched scoring.

`ServedModel` is immutable once built. A model swap builds a new one beside the old and replaces
one reference, so a request that started on the old model finishes on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.bundle import Bundle, load_bundle
from app.ranking import top_k_unseen
from app.scoring import Scorer

# Popularity is a damped mean: each movie's ratings plus this many votes at the global mean, so a
# handful of 5-star votes cannot top a film that hundreds rated highly.
POPULARITY_PRIOR_VOTES = 25


@dataclass(frozen=True)
class RecommendRequest:
    model: ServedModel
    user_row: int
    k: int


@dataclass(frozen=True)
class PredictRequest:
    model: ServedModel
    pairs: np.ndarray  # int32 (n, 2) rows of [user_row, movie_row], known ids only


@dataclass(frozen=True)
class Ranked:
    movie_rows: np.ndarray
    stars: np.ndarray


class ServedModel:
    """One bundle, with everything a request needs precomputed at load time."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.encoders = bundle.encoders
        self.catalogue = bundle.catalogue
        self.ratings = bundle.ratings
        self.scorer = Scorer(bundle.model)
        self.user_rows = {user_id: row for row, user_id in enumerate(bundle.encoders.users)}
        self.movie_rows = {movie_id: row for row, movie_id in enumerate(bundle.encoders.movies)}
        n_movies = len(bundle.encoders.movies)
        self.rating_counts = np.bincount(self.ratings.movies, minlength=n_movies)
        sums = np.bincount(self.ratings.movies, weights=self.ratings.ratings, minlength=n_movies)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean_ratings = np.where(self.rating_counts > 0, sums / self.rating_counts, np.nan)
        overall = float(self.ratings.ratings.mean()) if len(self.ratings.ratings) else 0.0
        damped = (sums + POPULARITY_PRIOR_VOTES * overall) / (self.rating_counts + POPULARITY_PRIOR_VOTES)
        self.popular_rows = np.argsort(-damped, kind="stable")
        self.popularity = damped

    @classmethod
    def load(cls, path: Path) -> ServedModel:
        """Loads, checks and warms up a bundle folder (slow: call it off the event loop)."""
        served = cls(load_bundle(path))
        served.scorer.warm_up()
        return served

    def seen(self, user_row: int) -> np.ndarray:
        """Movie rows the user rated anywhere in the data set (never recommended back)."""
        return self.ratings.of(user_row)[0]

    def popular(self, k: int) -> Ranked:
        rows = self.popular_rows[:k]
        return Ranked(rows, self.popularity[rows])


def recommend_batch(requests: Sequence[RecommendRequest]) -> list[Ranked]:
    """Top-k unrated movies for a batch of users: one model call per model in the batch."""
    results: dict[int, Ranked] = {}
    for model, indices in _group_by_model(requests):
        users = np.array([requests[i].user_row for i in indices], dtype=np.int32)
        k = max(requests[i].k for i in indices)
        scores = model.scorer.score_users(users)
        tops = top_k_unseen(scores, [model.seen(u) for u in users], k)
        for position, i in enumerate(indices):
            top = tops[position, : requests[i].k]
            top = top[top >= 0]
            stars = model.encoders.to_stars(scores[position, top].astype(np.float64))
            results[i] = Ranked(top, stars)
    return [results[i] for i in range(len(requests))]


def predict_batch(requests: Sequence[PredictRequest]) -> list[np.ndarray]:
    """Predicted stars for each request's pairs: one model call per model in the batch."""
    results: dict[int, np.ndarray] = {}
    for model, indices in _group_by_model(requests):
        pairs = [requests[i].pairs for i in indices]
        stars = model.encoders.to_stars(model.scorer.score_pairs(np.concatenate(pairs)).astype(np.float64))
        bounds = np.cumsum([len(p) for p in pairs])[:-1]
        for i, part in zip(indices, np.split(stars, bounds), strict=True):
            results[i] = part
    return [results[i] for i in range(len(requests))]


def _group_by_model(
    requests: Sequence[RecommendRequest] | Sequence[PredictRequest],
) -> list[tuple[ServedModel, list[int]]]:
    """Request positions grouped by the model each started on (two only during a swap)."""
    groups: dict[int, tuple[ServedModel, list[int]]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(id(request.model), (request.model, []))[1].append(i)
    return list(groups.values())
