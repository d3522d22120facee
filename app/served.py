"""A loaded bundle made ready to serve: id lookups, per-movie statistics and its scorer.

`ServedBundle` is immutable once built. A live swap builds a new one beside the old and replaces
one reference, so a request that started on the old bundle finishes on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.bundle import Bundle, load_bundle
from app.scoring import Scorer

# Popularity is a damped mean: each movie's ratings plus this many votes at the global mean, so a
# handful of 5-star votes cannot top a film that hundreds rated highly.
POPULARITY_PRIOR_VOTES = 25


@dataclass(frozen=True)
class Ranked:
    """A ranked list: movie rows, best first, with the predicted stars of each."""

    movie_rows: np.ndarray
    stars: np.ndarray


class ServedBundle:
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
    def load(cls, path: Path) -> ServedBundle:
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
