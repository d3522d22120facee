"""Fold-in: user vectors fitted at request time against the bundle's frozen movie side.

A user the bundle does not know, or a known user with ratings stored since it was trained, is
scored like everyone else once they have vectors. For the `rating` output each ensemble member
gets a user vector and bias that fit the user's ratings under the member's own loss (binary
cross-entropy on stars scaled to [0, 1]), with the movie side held fixed: a small convex problem
solved by a few Newton steps. The L2 pull towards a prior (zero for a new user, the trained
vector for a known one) makes a single rating move a known user's vector a little, not all the
way. For the `ranking` output see `app.scoring`: its user vector is a sum over rated movies.
"""

from __future__ import annotations

import numpy as np

NEWTON_STEPS = 8


def fit_rating_vector(
    movie_vectors: np.ndarray,
    movie_bias: np.ndarray,
    targets: np.ndarray,
    prior: np.ndarray,
    strength: float,
) -> np.ndarray:
    """The `[user vector, user bias]` that best explains `targets` for one member.

    `movie_vectors` `(n, d)` and `movie_bias` `(n,)` are the member's rows for the rated movies;
    `targets` `(n,)` are the ratings scaled to [0, 1]; `prior` `(d + 1,)` is where the fit starts
    and what the penalty `strength * |theta - prior|^2` pulls towards.
    """
    features = np.hstack([movie_vectors, np.ones((len(targets), 1))]).astype(np.float64)
    theta = prior.astype(np.float64).copy()
    penalty = 2.0 * strength * np.eye(len(theta))
    for _ in range(NEWTON_STEPS):
        logits = features @ theta + movie_bias
        scores = 1.0 / (1.0 + np.exp(-logits))
        gradient = features.T @ (scores - targets) + penalty @ (theta - prior)
        curvature = (features * (scores * (1.0 - scores))[:, None]).T @ features + penalty
        theta -= np.linalg.solve(curvature, gradient)
    return theta.astype(np.float32)
