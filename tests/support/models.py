"""Untrained bundle models, built in a second by training's own builders: random weights, any size."""

from __future__ import annotations

import keras
import numpy as np

from training.config import TrainingConfig
from training.model import member_output, pairs_input, ranking_output, recommender
from training.ranking import RankingTables


def random_tables(n_users: int, n_movies: int, rank: int, seed: int) -> RankingTables:
    rng = np.random.default_rng(seed)
    return RankingTables(
        users=rng.normal(size=(n_users, rank)).astype(np.float32),
        movies=rng.normal(size=(n_movies, rank)).astype(np.float32),
        scales=rng.uniform(0.5, 2.0, n_movies).astype(np.float32),
    )


def build_model(members: int, n_users: int, n_movies: int, dim: int = 8, rank: int = 5) -> keras.Model:
    """The saved model's architecture (format 3: `rating` and `ranking`), seeded by `members`."""
    keras.utils.set_random_seed(members)
    pairs = pairs_input()
    outputs = [
        member_output(pairs, n_users, n_movies, TrainingConfig(embedding_dim=dim, activity_l2=0.0), member)
        for member in range(members)
    ]
    return recommender(pairs, outputs, ranking_output(pairs, random_tables(n_users, n_movies, rank, members)))


def build_rating_only_model(members: int, n_users: int, n_movies: int, dim: int = 8) -> keras.Model:
    """A format-1 model: the members' mean as its one output, no ranking tables."""
    keras.utils.set_random_seed(members)
    pairs = pairs_input()
    config = TrainingConfig(embedding_dim=dim, activity_l2=0.0)
    outputs = [member_output(pairs, n_users, n_movies, config, member) for member in range(members)]
    rating = outputs[0] if members == 1 else keras.layers.Average()(outputs)
    return keras.Model(pairs, rating)
