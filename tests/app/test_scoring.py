"""Scoring a user against the whole catalogue: the same numbers as the saved model on every pair."""

from __future__ import annotations

import json

import keras
import numpy as np

from app.bundle import RANKING_OUTPUT, RATING_OUTPUT
from app.scoring import MAX_K, Scorer

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


def test_every_model_call_is_padded_to_a_power_of_two_and_cut_back(tiny_bundle, monkeypatch):
    """Few input shapes per model: TensorFlow's per-shape state would otherwise pile up per swap."""
    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    scorer = Scorer(model)
    sizes: list[int] = []
    for derived in (model, scorer.all_movies, *scorer.top_movies.values()):
        call = derived.predict_on_batch

        def recording(inputs, call=call):
            sizes.append(len(keras.tree.flatten(inputs)[0]))
            return call(inputs)

        monkeypatch.setattr(derived, "predict_on_batch", recording)
    pairs = np.array([[0, 0], [1, 2], [2, 1], [0, 3], [1, 1]], dtype=np.int32)
    scores = scorer.score_pairs(pairs)
    saved = model.predict(pairs, verbose=0)
    np.testing.assert_allclose(scores.rating, saved[RATING_OUTPUT][:, 0], atol=TOLERANCE)
    users = np.array([2, 0, 1], dtype=np.int32)
    assert scorer.score_users(users).rating.shape[0] == 3
    top = scorer.top_by_ranking(users, None, [np.zeros(0, np.int32)] * 3)
    assert top.movies.shape[0] == 3
    assert sizes == [8, 4, 4]


def test_a_short_list_is_the_start_of_the_long_one_and_holds_k(tiny_bundle):
    """Batches asking for few movies rank them with a shorter top-k model: the same movies and
    scores as the longest list's first k, and never fewer than asked for."""
    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    scorer = Scorer(model, list_lengths=(2, 5))
    longest_list = min(MAX_K, scorer.n_movies)
    assert list(scorer.top_movies) == [2, 5, longest_list]
    users = np.array([0, 1, 2], dtype=np.int32)
    seen = [np.zeros(0, np.int32), np.array([0, 3], np.int32), np.arange(1, 6, dtype=np.int32)]
    longest = scorer.top_by_ranking(users, None, seen, longest_list)
    assert longest.movies.shape == (3, longest_list)
    for k in range(1, longest_list + 1):
        top = scorer.top_by_ranking(users, None, seen, k)
        width = top.movies.shape[1]
        assert width == min(length for length in scorer.top_movies if length >= k)
        np.testing.assert_array_equal(top.movies, longest.movies[:, :width])
        np.testing.assert_allclose(top.ranking, longest.ranking[:, :width], atol=TOLERANCE)
        np.testing.assert_allclose(top.rating, longest.rating[:, :width], atol=TOLERANCE)
