"""Scoring a user against the whole catalogue: the same numbers as the saved model on every pair."""

from __future__ import annotations

import json

import keras
import numpy as np

from app.bundle import RANKING_OUTPUT, RATING_OUTPUT
from app.scoring import Scorer

TOLERANCE = 1e-6


def test_whole_catalogue_scores_equal_predict_on_every_pair(tiny_bundle):
    """Training's ranking figures and the server both use the derived catalogue model."""
    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    encoders = json.loads((tiny_bundle / "encoders.json").read_text())
    n_users, n_movies = len(encoders["users"]), len(encoders["movies"])
    users = np.array([0, n_users - 1, n_users // 2], dtype=np.int32)
    scores = Scorer(model).score_users(users)
    assert scores.rating.shape == scores.ranking.shape == (3, n_movies)
    for row, user in enumerate(users):
        pairs = np.stack([np.full(n_movies, user), np.arange(n_movies)], axis=1).astype(np.int32)
        saved = model.predict(pairs, verbose=0)
        np.testing.assert_allclose(scores.rating[row], saved[RATING_OUTPUT][:, 0], atol=TOLERANCE)
        np.testing.assert_allclose(
            scores.ranking[row], saved[RANKING_OUTPUT][:, 0], rtol=1e-5, atol=TOLERANCE
        )
