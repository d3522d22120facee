"""The ranking score: EASE, an item-to-item linear model, in a low-rank form that scales.

EASE (Steck, 2019) scores movie j for a user as a weighted sum of the user's own interactions:
score(u, j) = sum over i of X[u, i] * B[i, j], with the item-to-item weights B in closed form:
B = I - P / diag(P), P = (X^T X + l2 * I)^-1. Here X holds each rating's stars divided by the top
of the scale, so a 5-star rating says more than a 1-star one (the README has the measurements
that chose this over plain rated-or-not, and EASE over the alternatives).

A dense B is n_movies^2 weights (14 GB at 59,000 movies) and n_movies^2 multiply-adds per user.
Instead, with X^T X / l2 = V S V^T, P = (I - V diag(s / (1 + s)) V^T) / l2 exactly, and for a
movie the user has not rated the identity term drops out:

    score(u, j) = (X[u] @ C) . C[j] / P[j, j],   C = V diag(sqrt(s / (1 + s))) / sqrt(l2)

Keeping the `rank` largest eigenvalues, found by a randomized SVD of the sparse X / sqrt(l2)
(no dense n x n matrix is ever formed), gives two embedding tables, users X @ C and movies C,
and one scale per movie, 1 / P[j, j]. The user side is a sum of movie rows, so a user the model
never saw is folded in exactly from their ratings, with the model's own movie table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse

OVERSAMPLING = 16
POWER_ITERATIONS = 4
# Above this many movies the dense EASE baseline (two n x n float64 matrices) is not computed.
DENSE_EASE_MAX_MOVIES = 15_000


@dataclass(frozen=True)
class RankingTables:
    """The ranking output as tables: score(u, j) = (users[u] . movies[j]) * scales[j]."""

    users: np.ndarray  # (n_users, rank): X @ movies, the training part's ratings
    movies: np.ndarray  # (n_movies, rank): C, also what one unit of X[u, j] adds to users[u]
    scales: np.ndarray  # (n_movies,): 1 / P[j, j]


def interactions(
    pairs: np.ndarray, stars: np.ndarray, n_users: int, n_movies: int, top_stars: float
) -> scipy.sparse.csr_matrix:
    """X: one row per user, stars / `top_stars` where the user rated, zero elsewhere."""
    values = (stars / top_stars).astype(np.float64)
    return scipy.sparse.csr_matrix((values, (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_movies))


def top_eigenvectors(x: scipy.sparse.csr_matrix, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The `rank` largest eigenvalues of x^T x and their eigenvectors `(n_movies, rank)`.

    A randomized SVD of x (Halko, Martinsson and Tropp, 2011): products of the sparse x with a
    random block, sharpened by power iterations, find the leading subspace; an exact SVD of the
    small projection finishes it. Never more than `rank` can be found than x has rows.
    """
    rank = min(rank, *x.shape)
    width = min(rank + OVERSAMPLING, *x.shape)
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(x @ rng.standard_normal((x.shape[1], width)))[0]
    for _ in range(POWER_ITERATIONS):
        basis = np.linalg.qr(x.T @ basis)[0]
        basis = np.linalg.qr(x @ basis)[0]
    _, singular, right = np.linalg.svd(np.asarray((x.T @ basis).T), full_matrices=False)
    return singular[:rank] ** 2, right[:rank].T


def fit_ranking(
    pairs: np.ndarray,
    stars: np.ndarray,
    n_users: int,
    n_movies: int,
    *,
    top_stars: float,
    l2: float,
    rank: int,
    seed: int,
) -> RankingTables:
    """The ranking tables for the training part's ratings (`pairs` of [user_row, movie_row])."""
    x = interactions(pairs, stars, n_users, n_movies, top_stars)
    eigenvalues, eigenvectors = top_eigenvectors(x / np.sqrt(l2), rank, seed)
    movies = eigenvectors * np.sqrt(eigenvalues / (1.0 + eigenvalues) / l2)
    diagonal = 1.0 / l2 - np.sum(movies**2, axis=1)  # P[j, j] as the kept eigenvalues give it
    users = np.asarray(x @ movies)
    return RankingTables(
        users=users.astype(np.float32),
        movies=movies.astype(np.float32),
        scales=(1.0 / diagonal).astype(np.float32),
    )


def dense_ease_weights(x: scipy.sparse.csr_matrix, l2: float) -> np.ndarray:
    """EASE's exact B for `x`: dense `(n_movies, n_movies)`, zero diagonal. For evaluation only.

    The inverse comes from a Cholesky factorisation in place (LAPACK potrf, then potri), several
    times faster than a general inverse.
    """
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += l2
    factor, info = scipy.linalg.lapack.dpotrf(gram, lower=False, overwrite_a=True, clean=False)
    inverse, info = (
        scipy.linalg.lapack.dpotri(factor, lower=False, overwrite_c=True) if info == 0 else (None, info)
    )
    if info != 0:
        raise ValueError(f"cannot invert the regularised Gram matrix (LAPACK info {info})")
    inverse = np.triu(inverse)
    inverse += np.triu(inverse, 1).T  # potri fills the upper triangle only
    weights = inverse / -np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights
