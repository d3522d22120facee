"""Turning ratings into model inputs: id encoders and the seed's train/validation split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from app.bundle import Encoders


@dataclass(frozen=True)
class Encoded:
    """Ratings as embedding rows: `pairs[i] = [user_row, movie_row]`, `stars[i]` its rating."""

    encoders: Encoders
    pairs: np.ndarray  # int32 (N, 2)
    stars: np.ndarray  # float32 (N,)

    @property
    def n_users(self) -> int:
        return len(self.encoders.users)

    @property
    def n_movies(self) -> int:
        return len(self.encoders.movies)


@dataclass(frozen=True)
class Split:
    """Row numbers of the training and validation parts of an `Encoded` data set."""

    train: np.ndarray
    validation: np.ndarray


def encode(ratings: pd.DataFrame) -> Encoded:
    """Encodes ids in order of first appearance, as the seed does, without a per-row loop."""
    user_rows, user_ids = pd.factorize(ratings["userId"])
    movie_rows, movie_ids = pd.factorize(ratings["movieId"])
    stars = ratings["rating"].to_numpy(np.float32)
    encoders = Encoders(
        users=user_ids.tolist(),
        movies=movie_ids.tolist(),
        rating_min=float(stars.min()),
        rating_max=float(stars.max()),
    )
    pairs = np.stack([user_rows, movie_rows], axis=1).astype(np.int32)
    return Encoded(encoders, pairs, stars)


def seed_split(n_ratings: int, validation_fraction: float = 0.1, seed: int = 42) -> Split:
    """The seed's split: shuffle with `random_state=seed`, first part train, the rest validation.

    `np.random.RandomState(seed).permutation(n)` is the order that pandas'
    `df.sample(frac=1, random_state=seed)` produces, so the figures compare with the seed's.
    """
    order = np.random.RandomState(seed).permutation(n_ratings)
    n_train = int((1 - validation_fraction) * n_ratings)
    return Split(train=order[:n_train], validation=order[n_train:])


def holdout_slice(rows: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Splits training rows into a fitting part and a tail for early stopping.

    Selection only ever looks at this tail of the training part, never at the validation part
    whose figures are reported.
    """
    n_fit = len(rows) - round(fraction * len(rows))
    return rows[:n_fit], rows[n_fit:]
