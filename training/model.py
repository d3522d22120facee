"""The saved model, built with the functional API so it saves and loads plainly.

`rating` is an ensemble of the seed notebook's RecommenderNet. One member: a user and a movie
embedding, one bias per user and per movie, sigmoid of their sum. Unlike the seed, the dot
product is row-wise (`Dot(axes=1)`): the seed's `ops.tensordot(u, m, 2)` also sums over the
batch, so each prediction depended on the other rows of its batch. The ensemble averages the
sigmoid outputs of members trained independently; weights cannot be averaged, since each
member's embeddings live in their own rotation.

`ranking` is a dot product of two fixed tables times a per-movie scale, computed in closed form
by `training.ranking`. Every layer is a stock Keras layer, so `keras.saving.load_model` in safe
mode needs no custom objects.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from app.bundle import (
    RANKING_MOVIE_LAYER,
    RANKING_OUTPUT,
    RANKING_SCALE_LAYER,
    RANKING_USER_LAYER,
    RATING_OUTPUT,
    member_layer_name,
)
from training.config import TrainingConfig
from training.ranking import RankingTables


def pairs_input() -> keras.KerasTensor:
    """The contract's input: int32 `(N, 2)` rows of `[user_index, movie_index]`."""
    return keras.Input(shape=(2,), dtype="int32", name="pairs")


def member_output(
    pairs: keras.KerasTensor, n_users: int, n_movies: int, config: TrainingConfig, member: int
) -> keras.KerasTensor:
    """One RecommenderNet on `pairs`: sigmoid(user . movie + user bias + movie bias).

    `l2` penalises the whole embedding tables every step, as the seed does; `activity_l2`
    penalises only the vectors a batch uses, which regularises rare users and movies harder
    than frequent ones (per-example regularisation).
    """
    users, movies = pairs[:, 0], pairs[:, 1]

    def embedding(rows: int, dim: int, role: str, regularised: bool) -> layers.Embedding:
        return layers.Embedding(
            rows,
            dim,
            embeddings_initializer=keras.initializers.HeNormal() if regularised else "uniform",
            embeddings_regularizer=keras.regularizers.L2(config.l2) if regularised and config.l2 else None,
            activity_regularizer=keras.regularizers.L2(config.activity_l2)
            if regularised and config.activity_l2
            else None,
            name=member_layer_name(member, role),
        )

    user_vector = embedding(n_users, config.embedding_dim, "user_embedding", True)(users)
    movie_vector = embedding(n_movies, config.embedding_dim, "movie_embedding", True)(movies)
    user_bias = embedding(n_users, 1, "user_bias", False)(users)
    movie_bias = embedding(n_movies, 1, "movie_bias", False)(movies)
    affinity = layers.Dot(axes=1, name=f"member{member}_dot")([user_vector, movie_vector])
    logit = layers.Add(name=f"member{member}_logit")([affinity, user_bias, movie_bias])
    return layers.Activation("sigmoid", name=f"member{member}_score")(logit)


def ranking_output(pairs: keras.KerasTensor, tables: RankingTables) -> keras.KerasTensor:
    """(user vector . movie vector) * movie scale, from tables fixed at their computed values."""
    users, movies = pairs[:, 0], pairs[:, 1]

    def table(values: np.ndarray, name: str) -> layers.Embedding:
        rows, width = values.reshape(len(values), -1).shape
        return layers.Embedding(
            rows, width, weights=[values.reshape(rows, width)], trainable=False, name=name
        )

    user_vector = table(tables.users, RANKING_USER_LAYER)(users)
    movie_vector = table(tables.movies, RANKING_MOVIE_LAYER)(movies)
    scale = table(tables.scales, RANKING_SCALE_LAYER)(movies)
    affinity = layers.Dot(axes=1, name="ranking_dot")([user_vector, movie_vector])
    return layers.Multiply(name=RANKING_OUTPUT)([affinity, scale])


def recommender(
    pairs: keras.KerasTensor, members: list[keras.KerasTensor], ranking: keras.KerasTensor
) -> keras.Model:
    """The saved model: `rating`, the mean of the members' scores, and `ranking`."""
    rating = (
        layers.Identity(name=RATING_OUTPUT)(members[0])
        if len(members) == 1
        else layers.Average(name=RATING_OUTPUT)(members)
    )
    return keras.Model(pairs, {RATING_OUTPUT: rating, RANKING_OUTPUT: ranking}, name="recommender")
