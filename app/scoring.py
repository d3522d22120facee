"""Scoring through the bundle's Keras model, always on whole batches.

Pairs go through the saved model itself with `predict_on_batch` (one call, no per-call set-up
as `model.predict` has). Scoring users against every movie, for recommendations, goes through a Keras model
derived from the saved one: it shares the trained embedding tables (no copy) and scores a batch
of users against every movie with one matrix product per member, which is the same arithmetic
as the saved model applied to every (user, movie) pair.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from app.bundle import MEMBER_ROLES, member_layer_name

PAIRS_PER_CALL = 1 << 18


class AllMovieScores(keras.layers.Layer):
    """Mean over members of sigmoid(U @ M.T + user bias + movie bias), for a batch of users."""

    def __init__(self, members: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(trainable=False, **kwargs)
        self._members = members

    def call(self, users: Any) -> Any:
        total = None
        for tables in self._members:
            user_vectors = ops.take(tables["user_embedding"], users, axis=0)
            user_bias = ops.take(tables["user_bias"], users, axis=0)
            logits = (
                ops.matmul(user_vectors, ops.transpose(tables["movie_embedding"]))
                + user_bias
                + ops.transpose(tables["movie_bias"])
            )
            scores = ops.sigmoid(logits)
            total = scores if total is None else total + scores
        return total / len(self._members)


def member_tables(model: keras.Model) -> list[dict[str, Any]]:
    """Each member's four trained tables, found by the names the bundle contract gives them."""
    names = {layer.name: layer for layer in model.layers}
    members = []
    while member_layer_name(len(members), "user_embedding") in names:
        member = len(members)
        members.append({role: names[member_layer_name(member, role)].embeddings for role in MEMBER_ROLES})
    if not members:
        raise ValueError(f"no layer named {member_layer_name(0, 'user_embedding')!r} in the model")
    return members


def all_movies_model(model: keras.Model) -> keras.Model:
    """A model from user rows `(B,)` to scores `(B, n_movies)`, sharing `model`'s weights."""
    users = keras.Input(shape=(), dtype="int32", name="users")
    return keras.Model(users, AllMovieScores(member_tables(model))(users), name="all_movies")


class Scorer:
    """The two batched scoring calls the server makes, for one loaded model."""

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        self.all_movies = all_movies_model(model)

    def score_pairs(self, pairs: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] for int32 `(N, 2)` rows of [user_row, movie_row].

        Millions of pairs (an evaluation) go in chunks, so memory stays bounded.
        """
        pairs = pairs.astype(np.int32, copy=False)
        chunks = [
            np.asarray(self.model.predict_on_batch(pairs[start : start + PAIRS_PER_CALL])).reshape(-1)
            for start in range(0, len(pairs), PAIRS_PER_CALL)
        ]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores in [0, 1] of each user row against every movie: `(len(users), n_movies)`."""
        return np.asarray(self.all_movies.predict_on_batch(users.astype(np.int32)))

    def warm_up(self) -> None:
        """Traces both calls once so the first request does not pay for it."""
        self.score_pairs(np.zeros((1, 2), dtype=np.int32))
        self.score_users(np.zeros(1, dtype=np.int32))
