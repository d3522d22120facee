"""Scoring through the bundle's Keras model, always on whole batches.

Pairs go through the saved model itself with `predict_on_batch` (one call, none of the per-call
set-up `model.predict` has). Recommendations go through Keras models derived from the saved
one, which share its trained tables (no copy): `top_movies_model` ranks every movie with one
matrix product, takes the k best inside the model and rates only those; `all_movies_model` gives
both outputs for every movie (ranking by rating, and the evaluation). Either is the same
arithmetic as the saved model applied to each (user, movie) pair.

The derived model takes user rows and, for users scored through fold-in (`app.fold_in`), vectors
that replace the rows' own: one call scores a batch that mixes both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from app.bundle import (
    MEMBER_ROLES,
    RANKING_MOVIE_LAYER,
    RANKING_OUTPUT,
    RANKING_SCALE_LAYER,
    RANKING_USER_LAYER,
    RATING_OUTPUT,
    member_layer_name,
)

PAIRS_PER_CALL = 1 << 18
MAX_K = 100  # the longest list a request may ask for
# The lists the derived top-movies models rank, besides MAX_K. Most requests ask for 10 (the
# default) or 20 movies, and ranking 20 instead of 100 takes a fifth off a batch's model call
# (top-k and the rating of the listed movies shrink with k; measured: README, Performance).
SHORT_LIST = 20
TOP_MOVIES_OUTPUT = "movies"


@dataclass(frozen=True)
class Scores:
    """`rating` in [0, 1] and `ranking` (larger = recommend first), of the same shape."""

    rating: np.ndarray
    ranking: np.ndarray


@dataclass(frozen=True)
class TopScores:
    """A batch's best movie rows `(B, k)` (-1 where a user has fewer unseen), and both outputs for them."""

    movies: np.ndarray
    rating: np.ndarray
    ranking: np.ndarray


@dataclass(frozen=True)
class UserVectors:
    """Vectors that stand in for a batch's users: each member's `[vector, bias]` and the ranking vector.

    `rating` is `(B, members, dim + 1)`, `ranking` `(B, rank)` (`(B, 0)` for a bundle with no
    ranking tables), `given` `(B,)` says which rows use them instead of the user row's own.
    """

    rating: np.ndarray
    ranking: np.ndarray
    given: np.ndarray


@dataclass(frozen=True)
class Tables:
    """The trained tables of a model, found by the layer names the bundle contract gives them."""

    members: list[dict[str, Any]]  # role -> Keras variable, per member
    ranking_users: Any | None
    ranking_movies: Any | None
    ranking_scales: Any | None

    @classmethod
    def of(cls, model: keras.Model) -> Tables:
        names = {layer.name: layer for layer in model.layers}
        members = []
        while member_layer_name(len(members), "user_embedding") in names:
            member = len(members)
            members.append({role: names[member_layer_name(member, role)].embeddings for role in MEMBER_ROLES})
        if not members:
            raise ValueError(f"no layer named {member_layer_name(0, 'user_embedding')!r} in the model")
        ranking = [
            names[name].embeddings if name in names else None
            for name in (RANKING_USER_LAYER, RANKING_MOVIE_LAYER, RANKING_SCALE_LAYER)
        ]
        return cls(members, *ranking)

    @property
    def has_ranking(self) -> bool:
        return self.ranking_users is not None

    def ranking_rows(self, rows: np.ndarray) -> np.ndarray:
        """Rows of the ranking movie table, gathered from the variable itself: no numpy copy of
        the whole table, which is 60 MB at ml-25m's size."""
        return np.asarray(ops.take(self.ranking_movies, np.asarray(rows, dtype=np.int32), axis=0))


class AllMovieScores(keras.layers.Layer):
    """Both outputs for a batch of users against every movie.

    `rating`: the mean over members of sigmoid(u @ M.T + user bias + movie bias). `ranking`:
    (r @ R.T) * scale with the ranking tables, or the rating itself for a bundle without them.
    """

    def __init__(self, tables: Tables, **kwargs: Any) -> None:
        super().__init__(trainable=False, **kwargs)  # pragma: no mutate
        self._tables = tables  # pragma: no mutate

    def call(self, users: Any, given: Any, rating_vectors: Any, ranking_vectors: Any) -> dict[str, Any]:
        tables = self._tables  # pragma: no mutate
        return all_movie_outputs(tables, users, given, rating_vectors, ranking_vectors)  # pragma: no mutate


def all_movie_outputs(
    tables: Tables, users: Any, given: Any, rating_vectors: Any, ranking_vectors: Any
) -> dict[str, Any]:
    """`AllMovieScores`'s arithmetic, as a function of the tables (Keras reads a layer's method
    signatures, so the layer's own methods stay plain; the mutation tests mutate this instead)."""
    replace = ops.expand_dims(given, 1)
    total = None
    for member, member_tables in enumerate(tables.members):
        vectors = _member_user_vectors(member_tables, users, replace, rating_vectors[:, member, :])
        logits = (
            ops.matmul(vectors[:, :-1], ops.transpose(member_tables["movie_embedding"]))
            + vectors[:, -1:]
            + ops.transpose(member_tables["movie_bias"])
        )
        scores = ops.sigmoid(logits)
        total = scores if total is None else total + scores
    rating = total / len(tables.members)
    if not tables.has_ranking:
        return {RATING_OUTPUT: rating, RANKING_OUTPUT: rating}
    return {
        RATING_OUTPUT: rating,
        RANKING_OUTPUT: _all_movie_ranking(tables, users, replace, ranking_vectors),
    }


def top_movie_outputs(
    tables: Tables, k: int, users: Any, given: Any, rating_vectors: Any, ranking_vectors: Any, excluded: Any
) -> dict[str, Any]:
    """`TopMovies`'s arithmetic: the k best movies by `ranking` (after adding `excluded`, 0 or
    -inf per movie), then the rating of those k only, the same sum per pair as `all_movie_outputs`."""
    replace = ops.expand_dims(given, 1)
    ranking, movies = ops.top_k(_all_movie_ranking(tables, users, replace, ranking_vectors) + excluded, k)
    total = None
    for member, member_tables in enumerate(tables.members):
        vectors = _member_user_vectors(member_tables, users, replace, rating_vectors[:, member, :])
        movie_vectors = ops.take(member_tables["movie_embedding"], movies, axis=0)  # (B, k, dim)
        logits = (
            ops.einsum("bd,bkd->bk", vectors[:, :-1], movie_vectors)
            + vectors[:, -1:]
            + ops.take(member_tables["movie_bias"], movies, axis=0)[..., 0]
        )
        scores = ops.sigmoid(logits)
        total = scores if total is None else total + scores
    return {TOP_MOVIES_OUTPUT: movies, RANKING_OUTPUT: ranking, RATING_OUTPUT: total / len(tables.members)}


def _member_user_vectors(member_tables: dict[str, Any], users: Any, replace: Any, given_vectors: Any) -> Any:
    """A member's `[vector, bias]` per user: its own row, or the given one where `replace`."""
    own = ops.concatenate(
        [
            ops.take(member_tables["user_embedding"], users, axis=0),
            ops.take(member_tables["user_bias"], users, axis=0),
        ],
        axis=1,
    )
    return ops.where(replace, given_vectors, own)


def _all_movie_ranking(tables: Tables, users: Any, replace: Any, ranking_vectors: Any) -> Any:
    vectors = ops.where(replace, ranking_vectors, ops.take(tables.ranking_users, users, axis=0))
    return ops.matmul(vectors, ops.transpose(tables.ranking_movies)) * ops.transpose(tables.ranking_scales)


class TopMovies(keras.layers.Layer):
    """The k best movies of a batch of users by `ranking`, with both outputs for those k."""

    def __init__(self, tables: Tables, k: int, **kwargs: Any) -> None:
        super().__init__(trainable=False, **kwargs)  # pragma: no mutate
        self._tables, self._k = tables, k  # pragma: no mutate

    def call(
        self, users: Any, given: Any, rating_vectors: Any, ranking_vectors: Any, excluded: Any
    ) -> dict[str, Any]:
        tables, k = self._tables, self._k  # pragma: no mutate
        vectors = {"rating_vectors": rating_vectors, "ranking_vectors": ranking_vectors}  # pragma: no mutate
        return top_movie_outputs(tables, k, users, given, excluded=excluded, **vectors)  # pragma: no mutate


def all_movies_model(tables: Tables) -> keras.Model:
    """A model from user rows `(B,)` (and replacement vectors) to both outputs `(B, n_movies)`."""
    inputs = _user_inputs(tables)
    return keras.Model(inputs, AllMovieScores(tables)(**inputs), name="all_movies")


def top_movies_model(tables: Tables, k: int) -> keras.Model:
    """A model from user rows (and replacement vectors, and each movie's 0 or -inf) to the k best
    movies `(B, k)` by `ranking`, with both outputs for them. Needs the ranking tables."""
    inputs = {
        **_user_inputs(tables),
        "excluded": keras.Input(shape=(tables.ranking_movies.shape[0],), name="excluded"),
    }
    return keras.Model(inputs, TopMovies(tables, k)(**inputs), name="top_movies")


def _user_inputs(tables: Tables) -> dict[str, Any]:
    members, dim = len(tables.members), tables.members[0]["user_embedding"].shape[1]
    rank = tables.ranking_users.shape[1] if tables.has_ranking else 0
    return {
        "users": keras.Input(shape=(), dtype="int32", name="users"),
        "given": keras.Input(shape=(), dtype="bool", name="given"),
        "rating_vectors": keras.Input(shape=(members, dim + 1), name="rating_vectors"),
        "ranking_vectors": keras.Input(shape=(rank,), name="ranking_vectors"),
    }


class Scorer:
    """The batched scoring calls the server makes, for one loaded model."""

    def __init__(self, model: keras.Model, list_lengths: tuple[int, ...] = (SHORT_LIST,)) -> None:
        self.model = model
        self.tables = Tables.of(model)
        self.all_movies = all_movies_model(self.tables)
        self.n_movies = int(self.tables.members[0]["movie_embedding"].shape[0])
        # Recommendations by `ranking` take the k best inside the model and rate only those: one
        # model per list length (MAX_K and `list_lengths`), shortest first; a batch uses the
        # shortest that holds its longest request.
        lengths = sorted({min(length, self.n_movies) for length in (*list_lengths, MAX_K)})
        self.top_movies = (
            {length: top_movies_model(self.tables, length) for length in lengths}
            if self.tables.has_ranking
            else {}
        )
        self.members = len(self.tables.members)
        self.dim = int(self.tables.members[0]["user_embedding"].shape[1])
        self.rank = int(self.tables.ranking_users.shape[1]) if self.tables.has_ranking else 0

    def score_pairs(self, pairs: np.ndarray) -> Scores:
        """Both outputs for int32 `(N, 2)` rows of [user_row, movie_row], as `(N,)` arrays.

        Millions of pairs (an evaluation) go in chunks, so memory stays bounded.
        """
        pairs = pairs.astype(np.int32, copy=False)
        chunks = [
            self._pair_outputs(pairs[start : start + PAIRS_PER_CALL])
            for start in range(0, len(pairs), PAIRS_PER_CALL)
        ]
        if not chunks:
            return Scores(np.zeros(0, np.float32), np.zeros(0, np.float32))
        return Scores(*(np.concatenate([chunk[i] for chunk in chunks]) for i in range(2)))

    def _pair_outputs(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = predict_padded(self.model, pairs, len(pairs))
        if not isinstance(outputs, dict):  # a bundle with one output uses it for both
            single = np.asarray(outputs).reshape(-1)
            return single, single
        return np.asarray(outputs[RATING_OUTPUT]).reshape(-1), np.asarray(outputs[RANKING_OUTPUT]).reshape(-1)

    def score_users(self, users: np.ndarray, vectors: UserVectors | None = None) -> Scores:
        """Both outputs of each user row against every movie: `(len(users), n_movies)` each.

        Rows marked in `vectors.given` are scored with `vectors` instead of their own.
        """
        outputs = predict_padded(self.all_movies, self._user_batch(users, vectors), len(users))
        return Scores(np.asarray(outputs[RATING_OUTPUT]), np.asarray(outputs[RANKING_OUTPUT]))

    def top_by_ranking(
        self, users: np.ndarray, vectors: UserVectors | None, seen: list[np.ndarray], k: int = MAX_K
    ) -> TopScores:
        """Each user's best k movies or more by `ranking` among those not in `seen[i]`, best first
        (ties: the lower movie row first), with both outputs for them; -1 pads a row that has
        fewer unseen movies. A longer list starts with the shorter one. Needs the ranking tables
        (`self.top_movies`)."""
        assert self.top_movies, "top_by_ranking needs a bundle with ranking tables"
        model = next(model for length, model in self.top_movies.items() if length >= min(k, self.n_movies))
        # Made at the padded size: the largest input, not copied again to be padded.
        excluded = np.zeros((padded_size(len(users)), self.n_movies), np.float32)
        for line, rows in enumerate(seen):
            excluded[line, rows] = -np.inf
        inputs = {**self._user_batch(users, vectors), "excluded": excluded}
        outputs = predict_padded(model, inputs, len(users))
        ranking = np.asarray(outputs[RANKING_OUTPUT])
        movies = np.where(np.isfinite(ranking), np.asarray(outputs[TOP_MOVIES_OUTPUT]), -1)
        return TopScores(movies, np.asarray(outputs[RATING_OUTPUT]), ranking)

    def _user_batch(self, users: np.ndarray, vectors: UserVectors | None) -> dict[str, np.ndarray]:
        """The derived models' user inputs (`_user_inputs`) for a batch: rows, and vectors that
        replace them where given (none given when `vectors` is None)."""
        vectors = vectors or self.no_vectors(len(users))
        return {
            "users": users.astype(np.int32),
            "given": vectors.given,
            "rating_vectors": vectors.rating,
            "ranking_vectors": vectors.ranking,
        }

    def no_vectors(self, n: int) -> UserVectors:
        """Placeholder vectors for `n` users who are all scored through their own rows."""
        return UserVectors(
            np.zeros((n, self.members, self.dim + 1), np.float32),
            np.zeros((n, self.rank), np.float32),
            np.zeros(n, bool),
        )

    def warm_up(self) -> None:
        """Traces every call once so the first request does not pay for it."""
        self.score_pairs(np.zeros((1, 2), dtype=np.int32))
        self.score_users(np.zeros(1, dtype=np.int32))
        vectors = self.no_vectors(1)
        self.score_users(
            np.zeros(1, dtype=np.int32), UserVectors(vectors.rating, vectors.ranking, np.ones(1, bool))
        )
        for length in self.top_movies:
            self.top_by_ranking(np.zeros(1, dtype=np.int32), vectors, [np.zeros(0, np.int32)], length)


def padded_size(rows: int) -> int:
    """The rows a call of `rows` is padded to: the next power of two.

    TensorFlow keeps state per input shape for each model (a traced function, oneDNN's primitives
    for it), and an old bundle's stays behind after a swap: with every batch size from 1 to 64
    seen, a process grew by about 70 MB a swap for four swaps (measured in-process, 761 to
    1,075 MB; the same traffic in seven shapes: 667 to 709 MB). A padded call costs at most
    twice the rows; a full batch, the common case under load, costs nothing more.
    """
    return 1 << max(rows - 1, 0).bit_length()


def predict_padded(model: keras.Model, inputs: Any, rows: int) -> Any:
    """`model.predict_on_batch(inputs)` with every input padded with zero rows (user and movie row
    0, nothing given, nothing excluded) to `padded_size(rows)`, and every output cut back to `rows`.
    Rows are scored independently, so the padding changes no real row's result."""
    size = padded_size(rows)

    def pad(array: np.ndarray) -> np.ndarray:
        if len(array) == size:
            return array
        return np.concatenate([array, np.zeros((size - len(array), *array.shape[1:]), array.dtype)])

    outputs = model.predict_on_batch(keras.tree.map_structure(pad, inputs))
    return keras.tree.map_structure(lambda output: np.asarray(output)[:rows], outputs)
