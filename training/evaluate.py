"""Evaluation on the validation part: rating error and top-k ranking, beside simple baselines.

Ranking follows the usual protocol: for each validation user with at least one relevant movie
(held-out rating >= 4), every movie the user did not rate in training is a candidate, the top
k by score are compared with the relevant set. All metrics are plain numpy on score matrices, so
the model and the baselines are judged by the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from app.bundle import RatingsByUser
from app.ranking import popularity, top_k_unseen
from app.scoring import Scorer
from training.config import TrainingConfig
from training.dataset import Encoded
from training.ranking import DENSE_EASE_MAX_MOVIES, dense_ease_weights, interactions

RELEVANT_STARS = 4.0
EPSILON = 1e-7
MOST_POPULAR = 100  # the "most-rated" movies whose share of top-k slots shows popularity bias

# Scores `(len(users), n_movies)` for a block of user rows.
ScoreUsers = Callable[[np.ndarray], np.ndarray]
# Figures by model or baseline name, then by metric name (None where a metric does not apply).
Table = dict[str, dict[str, float | None]]


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - actual)))


def binary_crossentropy(scores: np.ndarray, targets: np.ndarray) -> float:
    """The training loss on [0, 1] targets, with scores clipped as Keras does."""
    p = np.clip(scores, EPSILON, 1 - EPSILON)
    return float(-np.mean(targets * np.log(p) + (1 - targets) * np.log(1 - p)))


def dcg(gains: np.ndarray) -> np.ndarray:
    """Discounted cumulative gain of each row of a (users, k) 0/1 gain matrix."""
    discounts = 1.0 / np.log2(np.arange(2, gains.shape[1] + 2))
    return gains @ discounts


def ranking_metrics(top: np.ndarray, relevant: list[np.ndarray], k: int) -> dict[str, float | None]:
    """Mean precision@k, recall@k and NDCG@k of ranked movie rows against relevant sets.

    `top[i]` holds user i's k best candidates, best first; `relevant[i]` is non-empty. With no
    user at all (no held-out rating >= 4, as in a small data set), the figures are None.
    """
    if not len(relevant):
        return {f"precision@{k}": None, f"recall@{k}": None, f"ndcg@{k}": None}
    hits = np.array([np.isin(row[:k], rel) for row, rel in zip(top, relevant, strict=True)], float)
    n_relevant = np.array([len(rel) for rel in relevant], float)
    ideal = dcg((np.arange(k)[None, :] < np.minimum(n_relevant, k)[:, None]).astype(float))
    return {
        f"precision@{k}": float(np.mean(hits.sum(1) / k)),
        f"recall@{k}": float(np.mean(hits.sum(1) / n_relevant)),
        f"ndcg@{k}": float(np.mean(dcg(hits) / ideal)),
    }


class Biases:
    """Global mean plus damped user and movie biases, fitted by a few alternating passes."""

    def __init__(
        self,
        pairs: np.ndarray,
        stars: np.ndarray,
        n_users: int,
        n_movies: int,
        damping: float = 5.0,
        passes: int = 5,
    ) -> None:
        users, movies = pairs[:, 0], pairs[:, 1]
        self.mean = float(stars.mean())
        self.user = np.zeros(n_users)
        self.movie = np.zeros(n_movies)
        n_user = np.bincount(users, minlength=n_users)
        n_movie = np.bincount(movies, minlength=n_movies)
        for _ in range(passes):
            residual = stars - self.mean - self.user[users]
            self.movie = np.bincount(movies, residual, n_movies) / (n_movie + damping)
            residual = stars - self.mean - self.movie[movies]
            self.user = np.bincount(users, residual, n_users) / (n_user + damping)

    def predict(self, pairs: np.ndarray) -> np.ndarray:
        return self.mean + self.user[pairs[:, 0]] + self.movie[pairs[:, 1]]

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.mean + self.user[users][:, None] + self.movie[None, :]


def rating_metrics(stars_predicted: np.ndarray, stars: np.ndarray, to_scores: Callable) -> dict:
    """RMSE and MAE in stars and BCE on the scaled [0, 1] targets (predictions beyond the star
    range are clipped by `binary_crossentropy`, as Keras does)."""
    return {
        "rmse": rmse(stars_predicted, stars),
        "mae": mae(stars_predicted, stars),
        "bce": binary_crossentropy(to_scores(stars_predicted), to_scores(stars)),
    }


@dataclass(frozen=True)
class RankingTask:
    """Users to rank for, the movies each rated in training, each one's relevant movies, and the
    most-rated movies of the training part (for the popularity-bias figures)."""

    users: np.ndarray
    seen: list[np.ndarray]
    relevant: list[np.ndarray]
    most_rated: np.ndarray


def ranking_task(
    train_pairs: np.ndarray,
    validation_pairs: np.ndarray,
    validation_stars: np.ndarray,
    n_users: int,
    n_movies: int,
    max_users: int | None,
    seed: int,
) -> RankingTask:
    """The task on a split. With `max_users`, a seeded sample keeps it affordable on large sets."""
    relevant_pairs = validation_pairs[validation_stars >= RELEVANT_STARS]
    users = np.unique(relevant_pairs[:, 0])
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    seen = _movies_by_user(train_pairs, n_users)
    relevant = _movies_by_user(relevant_pairs, n_users)
    most_rated = np.argsort(-popularity(train_pairs[:, 1], n_movies), kind="stable")[:MOST_POPULAR]
    return RankingTask(users, [seen.of(u)[0] for u in users], [relevant.of(u)[0] for u in users], most_rated)


def rank_with(
    score_users: ScoreUsers, task: RankingTask, k: int = 10, block: int = 256
) -> dict[str, float | None]:
    """Ranking metrics of a scorer over the task's users, scored a block of users at a time, with
    the catalogue coverage of its lists and the share of their slots the most-rated movies hold."""
    users, seen = task.users, task.seen
    tops = [
        top_k_unseen(score_users(users[i : i + block]), seen[i : i + block], k)
        for i in range(0, len(users), block)
    ]
    top = np.concatenate(tops) if tops else np.zeros((0, k), int)
    listed = top[top >= 0]
    return {
        **ranking_metrics(top, task.relevant, k),
        f"distinct@{k}": float(len(np.unique(listed))) if len(listed) else None,
        f"most_rated_share@{k}": float(np.isin(listed, task.most_rated).mean()) if len(listed) else None,
    }


def evaluate_all(
    encoded: Encoded,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    model: keras.Model,
    config: TrainingConfig,
) -> tuple[Table, list[str]]:
    """Validation figures of the model and of the baselines, by the same code, and notes on what
    could not be computed.

    "model" ranks by the `ranking` output, as the server does by default; "model by rating"
    ranks by the predicted rating (the seed's ordering, `rank_by=rating`). "EASE (dense)" is the
    exact item matrix the ranking output approximates, where it fits in memory.
    """
    pairs, stars = encoded.pairs[validation_rows], encoded.stars[validation_rows]
    train_pairs, train_stars = encoded.pairs[train_rows], encoded.stars[train_rows]
    to_scores, to_stars = encoded.encoders.to_scores, encoded.encoders.to_stars
    scorer = Scorer(model)
    biases = Biases(train_pairs, train_stars, encoded.n_users, encoded.n_movies)
    most_rated = popularity(train_pairs[:, 1], encoded.n_movies).astype(float)
    task = ranking_task(
        train_pairs, pairs, stars, encoded.n_users, encoded.n_movies, config.evaluation_users, config.seed
    )
    constant = np.full(len(stars), float(train_stars.mean()))
    rows: Table = {
        "model": {
            **rating_metrics(to_stars(scorer.score_pairs(pairs).rating), stars, to_scores),
            **rank_with(lambda users: scorer.score_users(users).ranking, task),
        },
        "model by rating": rank_with(lambda users: scorer.score_users(users).rating, task),
        "user+movie biases": {
            **rating_metrics(biases.predict(pairs), stars, to_scores),
            **rank_with(biases.score_users, task),
        },
        "global mean": rating_metrics(constant, stars, to_scores),
        "most popular": rank_with(
            lambda users: np.broadcast_to(most_rated, (len(users), len(most_rated))), task
        ),
    }
    notes = []
    if encoded.n_movies <= DENSE_EASE_MAX_MOVIES:
        x = interactions(
            train_pairs, train_stars, encoded.n_users, encoded.n_movies, encoded.encoders.rating_max
        )
        weights = dense_ease_weights(x, config.ranking_l2)
        rows["EASE (dense)"] = rank_with(lambda users: np.asarray(x[users] @ weights), task)
        del weights
    else:
        notes.append(
            f"EASE (dense) skipped: {encoded.n_movies:,} movies is above {DENSE_EASE_MAX_MOVIES:,}, "
            "where its item-to-item matrix no longer fits in memory comfortably"
        )
    columns = sorted({column for row in rows.values() for column in row}, key=_column_order)
    return {name: {c: row.get(c) for c in columns} for name, row in rows.items()}, notes


def format_table(metrics: Table) -> str:
    """The metrics as a fixed-width text table, one row per model or baseline."""
    columns = list(next(iter(metrics.values())))
    lines = [f"{'':20}" + "".join(f"{c:>20}" for c in columns)]
    for name, row in metrics.items():
        cells = "".join(f"{'-' if row[c] is None else f'{row[c]:.4f}':>20}" for c in columns)
        lines.append(f"{name:20}{cells}")
    return "\n".join(lines)


def _column_order(column: str) -> tuple[int, str]:
    order = [
        "bce",
        "rmse",
        "mae",
        "precision@10",
        "recall@10",
        "ndcg@10",
        "distinct@10",
        "most_rated_share@10",
    ]
    return (order.index(column) if column in order else len(order), column)


def _movies_by_user(pairs: np.ndarray, n_users: int) -> RatingsByUser:
    """(user row, movie row) pairs grouped by user; the stars are not needed here."""
    return RatingsByUser.from_pairs(pairs[:, 0], pairs[:, 1], np.zeros(len(pairs), np.float32), n_users)
