"""A loaded bundle made ready to serve: id lookups, per-movie statistics, title search, its scorer,
and fold-in.

`ServedBundle` is immutable once built. A live swap builds a new one beside the old and replaces
one reference, so a request that started on the old bundle finishes on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np

from app.bundle import Bundle, load_bundle
from app.fold_in import fit_rating_vector
from app.ranking import popularity
from app.scoring import Scorer, UserVectors
from app.titles import TitleIndex

LIKED_STARS = 4.0  # a rating at or above this is a movie the user liked (explanations)


class StoredRating(Protocol):
    """A rating from the feedback store: what fold-in needs of `app.feedback.StoredRating`."""

    movie_id: int
    rating: float
    rated_at: datetime


StoredRatings = Sequence[StoredRating]


@dataclass(frozen=True)
class Ranked:
    """A ranked list: movie rows, best first, with each one's predicted stars and ranking score,
    and, when asked for, the liked movie row each is closest to (None where there is none)."""

    movie_rows: np.ndarray
    stars: np.ndarray
    scores: np.ndarray
    because: list[int | None] | None = None


@dataclass(frozen=True)
class UserState:
    """What scoring needs to know of one user: their row (any row when `vectors` stand in for
    it), the movies never to recommend back, the ones they liked, and fold-in vectors if any."""

    row: int
    seen: np.ndarray
    liked: np.ndarray
    vectors: tuple[np.ndarray, np.ndarray] | None = None  # rating (members, dim + 1), ranking (rank,)
    folded_in: bool = False


class ServedBundle:
    """One bundle, with everything a request needs precomputed at load time."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.version = bundle.version
        self.encoders = bundle.encoders
        self.catalogue = bundle.catalogue
        self.ratings = bundle.ratings
        self.fold_in_settings = bundle.metadata.fold_in
        self.scorer = Scorer(bundle.model)
        self.user_rows = {user_id: row for row, user_id in enumerate(bundle.encoders.users)}
        self.movie_rows = {movie_id: row for row, movie_id in enumerate(bundle.encoders.movies)}
        n_movies = len(bundle.encoders.movies)
        self.rating_counts = popularity(self.ratings.movies, n_movies)
        sums = np.bincount(self.ratings.movies, weights=self.ratings.ratings, minlength=n_movies)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean_ratings = np.where(self.rating_counts > 0, sums / self.rating_counts, np.nan)
        self.popular_rows = np.argsort(-self.rating_counts, kind="stable")
        self.titles = TitleIndex(self.catalogue.titles, self.popular_rows)  # title search, most-rated first
        tables = self.scorer.tables
        # The frozen movie side, as numpy, for fold-in and explanations.
        self._member_movies = [
            (np.asarray(t["movie_embedding"]), np.asarray(t["movie_bias"]).reshape(-1))
            for t in tables.members
        ]
        # The ranking table is not copied: 60 MB at ml-25m's size for the few rows a call needs.

    @classmethod
    def load(cls, path: Path) -> ServedBundle:
        """Loads, checks and warms up a bundle folder (slow: call it off the event loop)."""
        served = cls(load_bundle(path))
        served.scorer.warm_up()
        return served

    def popular(self, k: int) -> Ranked:
        """The k most-rated movies, with their mean rating as the stars and their count as the score."""
        rows = self.popular_rows[:k]
        return Ranked(rows, self.mean_ratings[rows], self.rating_counts[rows].astype(np.float64))

    def merged_ratings(self, user_id: int, stored: StoredRatings) -> dict[int, tuple[float, datetime | None]]:
        """Every rating of a user, by movie row: (stars, when it was stored, or None for the data
        set's). A stored rating replaces the data set's for the same movie; stored ratings of
        movies this bundle lacks are left out."""
        merged: dict[int, tuple[float, datetime | None]] = {}
        row = self.user_rows.get(user_id)
        if row is not None:
            movies, stars = self.ratings.of(row)
            merged.update(zip(movies.tolist(), ((s, None) for s in stars.tolist()), strict=True))
        for rating in stored:
            movie_row = self.movie_rows.get(rating.movie_id)
            if movie_row is not None:
                merged[movie_row] = (rating.rating, rating.rated_at)
        return merged

    def user_state(self, user_id: int, stored: StoredRatings) -> UserState | None:
        """How to score a user, or None if neither the bundle nor the feedback store knows them.

        A user with no stored rating is scored through their own row, exactly as trained. Anyone
        with stored ratings is folded in: vectors fitted to all their ratings at once.
        """
        row = self.user_rows.get(user_id)
        if row is not None and not stored:  # most requests: the bundle's own arrays, nothing merged
            movies, stars = self.ratings.of(row)
            return UserState(row, movies, movies[stars >= LIKED_STARS])
        merged = self.merged_ratings(user_id, stored)
        if row is None and not merged:
            return None
        movies = np.fromiter(merged, np.int64, len(merged))
        stars = np.fromiter((value[0] for value in merged.values()), np.float64, len(merged))
        liked = movies[stars >= LIKED_STARS]
        return UserState(row or 0, movies, liked, self.fold_in(movies, stars), folded_in=row is None)

    def fold_in(self, movies: np.ndarray, stars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for a user from their ratings alone, against the frozen movie side.

        `rating`: per member, the `[vector, bias]` that fits the ratings under the member's own
        loss and penalty. `ranking`: the sum of the rated movies' rows, each weighted by its
        stars as in training (`training.ranking`): exactly what training computes for a user.
        """
        targets = self.encoders.to_scores(stars)
        settings = self.fold_in_settings
        penalty = np.array([settings.rating_l2 * len(movies)] * self.scorer.dim + [settings.bias_l2])
        rating = np.stack(
            [
                fit_rating_vector(vectors[movies], bias[movies], targets, penalty)
                for vectors, bias in self._member_movies
            ]
        )
        if not self.scorer.tables.has_ranking:
            return rating, np.zeros(0, np.float32)
        weights = (stars / self.encoders.rating_max).astype(np.float32)
        return rating, weights @ self.scorer.tables.ranking_rows(movies)

    def vectors_of(self, users: Sequence[UserState]) -> UserVectors | None:
        """The stand-in vectors of a batch of users, or None if every one is scored by row."""
        if all(user.vectors is None for user in users):
            return None
        placeholder = self.scorer.no_vectors(len(users))
        for position, user in enumerate(users):
            if user.vectors is not None:
                placeholder.rating[position], placeholder.ranking[position] = user.vectors
                placeholder.given[position] = True
        return placeholder

    def closest_liked(self, movie_rows: np.ndarray, user: UserState) -> list[int | None]:
        """For each movie row, the liked movie closest to it by cosine over the model's movie
        vectors (the ranking tables'), or None for a user who liked nothing."""
        if not len(user.liked):
            return [None] * len(movie_rows)
        similarity = self._unit_vectors(movie_rows) @ self._unit_vectors(user.liked).T
        return [int(row) for row in user.liked[np.argmax(similarity, axis=1)]]

    def _unit_vectors(self, rows: np.ndarray) -> np.ndarray:
        """Movie rows' vectors (the ranking table's, else the first member's), of length 1."""
        tables = self.scorer.tables
        vectors = tables.ranking_rows(rows) if tables.has_ranking else self._member_movies[0][0][rows]
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
