"""Fold-in: user vectors fitted at request time against the bundle's frozen movie side.

A user the bundle does not know, or a known user with ratings stored since it was trained, is
scored like everyone else once they have vectors. For the `rating` output each ensemble member
gets a user vector and bias that fit all the user's ratings under the member's own loss (binary
cross-entropy on stars scaled to [0, 1]) and penalty, with the movie side held fixed: a small
convex problem, solved by a few Newton steps. (The `ranking` output needs no fitting: its user
vector is a weighted sum of movie rows, see `ServedBundle.fold_in`.)
"""

from __future__ import annotations

import numpy as np

NEWTON_STEPS = 8


def fit_rating_vector(
    movie_vectors: np.ndarray,
    movie_bias: np.ndarray,
    targets: np.ndarray,
    penalty: np.ndarray,
) -> np.ndarray:
    """The `[user vector, user bias]` that best explains `targets` for one member.

    `movie_vectors` `(n, d)` and `movie_bias` `(n,)` are the member's rows for the rated movies;
    `targets` `(n,)` are the ratings scaled to [0, 1]; the fit minimises the summed cross-entropy
    plus `sum(penalty * theta^2)`, `penalty` `(d + 1,)` one weight per parameter.
    """
    features = np.hstack([movie_vectors, np.ones((len(targets), 1))]).astype(np.float64)
    theta = np.zeros(features.shape[1])
    penalty = 2.0 * np.diag(penalty)
    for _ in range(NEWTON_STEPS):
        logits = features @ theta + movie_bias
        scores = 1.0 / (1.0 + np.exp(-logits))
        gradient = features.T @ (scores - targets) + penalty @ theta
        curvature = (features * (scores * (1.0 - scores))[:, None]).T @ features + penalty
        theta -= np.linalg.solve(curvature, gradient)
    return theta.astype(np.float32)
