"""The matrix-factorisation model, built with the functional API so it saves and loads plainly.

One member is the seed notebook's RecommenderNet: a user and a movie embedding, one bias per
user and per movie, sigmoid of their sum. Unlike the seed, the dot product is row-wise
(`Dot(axes=1)`): the seed's `ops.tensordot(u, m, 2)` also sums over the batch, so each prediction
depended on the other rows of its batch. An ensemble averages the sigmoid outputs of members
trained independently; weights cannot be averaged, since each member's embeddings live in their
own rotation. Every layer is a stock Keras layer, so `keras.saving.load_model` in safe mode needs
no custom objects.
"""

from __future__ import annotations

import keras
from keras import layers

from app.bundle import member_layer_name
from training.config import TrainingConfig


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


def ensemble(pairs: keras.KerasTensor, outputs: list[keras.KerasTensor]) -> keras.Model:
    """One model whose score is the mean of its members' scores (a member alone if just one)."""
    score = outputs[0] if len(outputs) == 1 else layers.Average(name="score")(outputs)
    return keras.Model(pairs, score, name="recommender")
