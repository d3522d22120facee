"""The saved model's contract: (N, 2) int32 pairs in, `rating` and `ranking` (N, 1) out, each row
on its own.

The seed notebook's `ops.tensordot(u, m, 2)` summed over the whole batch, so a pair's score
depended on its neighbours; these tests pin that a pair's outputs are the same alone, at any
position of any batch, in batches of any size.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from app.bundle import (
    MEMBER_ROLES,
    RANKING_MOVIE_LAYER,
    RANKING_OUTPUT,
    RANKING_SCALE_LAYER,
    RANKING_USER_LAYER,
    RATING_OUTPUT,
    member_layer_name,
)
from tests.support.models import build_model, random_tables

TOLERANCE = 1e-6


def random_pairs(rng: np.random.Generator, n: int, n_users: int, n_movies: int) -> np.ndarray:
    return np.stack([rng.integers(0, n_users, n), rng.integers(0, n_movies, n)], axis=1).astype(np.int32)


def outputs_of(model: keras.Model, pairs: np.ndarray, **predict: int) -> np.ndarray:
    """Both outputs side by side, `(N, 2)`: rating, ranking (through `predict` if given its options)."""
    found = model.predict(pairs, verbose=0, **predict) if predict else model.predict_on_batch(pairs)
    return np.hstack([np.asarray(found[RATING_OUTPUT]), np.asarray(found[RANKING_OUTPUT])])


def assert_batch_invariant(model: keras.Model, n_users: int, n_movies: int, seed: int = 0) -> None:
    """Probe pairs score the same alone and scattered among other random pairs in batches of any size.

    Every batch holds all the probes at once, at positions that change from batch to batch
    (first, last, middle and random places), so a few calls cover many placements.
    """
    rng = np.random.default_rng(seed)
    probes = random_pairs(rng, 6, n_users, n_movies)
    probes[0] = [0, 0]
    probes[1] = [n_users - 1, n_movies - 1]
    alone = np.concatenate([outputs_of(model, probe[None, :]) for probe in probes])
    single = outputs_of(model, probes[:1], batch_size=1)
    assert np.abs(single[0] - alone[0]).max() <= TOLERANCE
    for size in (6, 7, 64, 1000, 4099):
        for arrangement in range(2):
            batch = random_pairs(rng, size, n_users, n_movies)
            # First, last and middle places, then random ones; the second arrangement reverses them.
            places = [0, size - 1, size // 2, *rng.permutation(size).tolist()]
            positions = np.array(list(dict.fromkeys(places))[: len(probes)])
            if arrangement:
                positions = positions[::-1].copy()
            batch[positions] = probes
            # One call on the whole batch (the server's way), and `predict` with the batch whole.
            outputs = [outputs_of(model, batch)]
            if arrangement == 0:
                outputs.append(outputs_of(model, batch, batch_size=size))
            for scores in outputs:
                assert scores.shape == (size, 2)
                worst = np.abs(scores[positions] - alone).max(axis=1)
                assert worst.max() <= TOLERANCE, (
                    f"pair {probes[worst.argmax()].tolist()} scores {alone[worst.argmax()]} alone but "
                    f"{scores[positions[worst.argmax()]]} at position {positions[worst.argmax()]} "
                    f"of a batch of {size}"
                )


def test_the_trained_model_scores_a_pair_the_same_in_any_batch(tiny_bundle):
    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    encoders = json.loads((tiny_bundle / "encoders.json").read_text())
    assert_batch_invariant(model, len(encoders["users"]), len(encoders["movies"]))


@pytest.mark.parametrize("members", [1, 3])
def test_a_built_model_is_batch_invariant_and_survives_a_safe_mode_round_trip(tmp_path, members):
    n_users, n_movies = 37, 113
    model = build_model(members, n_users, n_movies)
    assert_batch_invariant(model, n_users, n_movies, seed=members)

    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    pairs = random_pairs(np.random.default_rng(1), 500, n_users, n_movies)
    np.testing.assert_allclose(outputs_of(loaded, pairs), outputs_of(model, pairs), atol=TOLERANCE)
    assert_batch_invariant(loaded, n_users, n_movies, seed=members + 10)


def test_rating_is_the_mean_of_the_members_sigmoid_scores_and_ranking_the_scaled_dot_product():
    n_users, n_movies = 11, 17
    model = build_model(3, n_users, n_movies)
    pairs = random_pairs(np.random.default_rng(2), 50, n_users, n_movies)
    by_hand = []
    for member in range(3):
        table = {
            role: model.get_layer(member_layer_name(member, role)).get_weights()[0] for role in MEMBER_ROLES
        }
        users, movies = pairs[:, 0], pairs[:, 1]
        logit = (
            np.sum(table["user_embedding"][users] * table["movie_embedding"][movies], axis=1)
            + table["user_bias"][users, 0]
            + table["movie_bias"][movies, 0]
        )
        by_hand.append(1 / (1 + np.exp(-logit)))
    outputs = outputs_of(model, pairs)
    np.testing.assert_allclose(outputs[:, 0], np.mean(by_hand, axis=0), atol=TOLERANCE)
    tables = random_tables(n_users, n_movies, 5, 3)  # the tables build_model gave a 3-member model
    ranking = np.sum(tables.users[users] * tables.movies[movies], axis=1) * tables.scales[movies]
    np.testing.assert_allclose(outputs[:, 1], ranking, rtol=1e-5, atol=TOLERANCE)


def test_the_saved_model_meets_the_bundle_contract(tiny_bundle):
    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    encoders = json.loads((tiny_bundle / "encoders.json").read_text())
    n_users, n_movies = len(encoders["users"]), len(encoders["movies"])
    assert model.inputs[0].shape == (None, 2)
    assert model.inputs[0].dtype == "int32"
    pairs = random_pairs(np.random.default_rng(3), 300, n_users, n_movies)
    outputs = model.predict_on_batch(pairs)
    assert set(outputs) == {RATING_OUTPUT, RANKING_OUTPUT}
    assert np.asarray(outputs[RATING_OUTPUT]).shape == np.asarray(outputs[RANKING_OUTPUT]).shape == (300, 1)
    assert np.all((outputs[RATING_OUTPUT] >= 0) & (outputs[RATING_OUTPUT] <= 1))
    assert np.all(np.isfinite(outputs[RANKING_OUTPUT]))
    # The server finds every member's tables by name, sized by the encoders.
    names = {layer.name for layer in model.layers}
    for member in range(2):
        for role in MEMBER_ROLES:
            assert member_layer_name(member, role) in names
        assert model.get_layer(member_layer_name(member, "user_embedding")).input_dim == n_users
        assert model.get_layer(member_layer_name(member, "movie_embedding")).input_dim == n_movies
    assert member_layer_name(2, "user_embedding") not in names
    assert model.get_layer(RANKING_USER_LAYER).input_dim == n_users
    assert (
        model.get_layer(RANKING_MOVIE_LAYER).input_dim
        == model.get_layer(RANKING_SCALE_LAYER).input_dim
        == n_movies
    )
