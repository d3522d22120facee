"""Fold-in's fit of a rating vector, on its own: no bundle needed (fast, so mutation runs use it)."""

from __future__ import annotations

import numpy as np

from app.fold_in import fit_rating_vector


def test_the_rating_fold_in_recovers_a_planted_user_vector():
    rng = np.random.default_rng(0)
    movies, bias = rng.normal(size=(400, 6)), rng.normal(size=400)
    planted = np.array([0.8, -0.5, 0.3, 0.0, 1.1, -0.7, 0.4])  # six weights, then the user's bias
    targets = 1 / (1 + np.exp(-(movies @ planted[:6] + planted[6] + bias)))
    fitted = fit_rating_vector(movies, bias, targets, np.full(7, 1e-6))
    np.testing.assert_allclose(fitted, planted, atol=1e-3)
    assert fitted.dtype == np.float32, "the model's precision: it goes into the float32 user vectors"
    pulled = fit_rating_vector(movies, bias, targets, np.full(7, 1e4))
    assert np.abs(pulled).max() < 0.05, "a strong penalty pulls the vector to zero"


def test_the_rating_fold_in_is_the_minimum_of_the_penalised_cross_entropy():
    """At the fitted vector the objective's gradient vanishes, penalty included: a fit that only
    damped its steps by the penalty, without pulling towards zero, would stop elsewhere."""
    rng = np.random.default_rng(1)
    movies, bias = rng.normal(size=(30, 4)), rng.normal(size=30)
    targets = rng.uniform(size=30)
    penalty = np.array([2.0, 0.5, 1.0, 3.0, 0.2])
    theta = fit_rating_vector(movies, bias, targets, penalty).astype(np.float64)
    features = np.hstack([movies, np.ones((30, 1))])
    scores = 1 / (1 + np.exp(-(features @ theta + bias)))
    gradient = features.T @ (scores - targets) + 2 * penalty * theta
    np.testing.assert_allclose(gradient, 0, atol=1e-4)
    assert np.abs(theta).min() > 1e-3, "a vector of zeros would make the test vacuous"
