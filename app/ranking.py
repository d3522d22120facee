"""Ranking without a model: top-k selection with rated movies masked, and popularity."""

from __future__ import annotations

import numpy as np


def top_k_unseen(scores: np.ndarray, seen: list[np.ndarray], k: int) -> np.ndarray:
    """The k best columns of each row of `scores`, best first, skipping the columns in `seen[i]`.

    A partial sort (`argpartition`) finds the k best in linear time; only those k are sorted.
    Rows with fewer than k unseen columns are padded with -1. The work is on one negated copy,
    in the scores' own precision (the model's float32 stays float32).
    """
    cost = np.negative(scores)
    for row, columns in enumerate(seen):
        cost[row, columns] = np.inf
    k_eff = min(k, cost.shape[1])
    best = np.argpartition(cost, k_eff - 1, axis=1)[:, :k_eff]
    best_cost = np.take_along_axis(cost, best, axis=1)
    order = np.argsort(best_cost, axis=1, kind="stable")
    best = np.take_along_axis(best, order, axis=1)
    best[~np.isfinite(np.take_along_axis(best_cost, order, axis=1))] = -1
    return best


def popularity(movie_rows: np.ndarray, n_movies: int) -> np.ndarray:
    """Each movie's number of ratings: what "most popular" means everywhere in this project.

    The popular fallback and the evaluation's "most popular" baseline both rank by it. Of the
    definitions measured (README, Ranking), it ranks best: a damped mean rating ranks worse.
    """
    return np.bincount(movie_rows, minlength=n_movies)
