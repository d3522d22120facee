"""What `fit` does: which part early stopping watches, and the model it returns."""

from __future__ import annotations

import keras
import numpy as np

from tests.support.data import random_ratings
from training.config import TrainingConfig
from training.dataset import encode, holdout_slice, seed_split
from training.fit import fit


def test_early_stopping_watches_the_tail_of_the_training_part_never_the_validation_part(monkeypatch):
    encoded = encode(random_ratings(n_users=30, n_movies=60, n_ratings=900))
    split = seed_split(len(encoded.stars))
    watched = []
    real_fit = keras.Model.fit

    def recording_fit(model, x, y, **options):
        watched.append(options["validation_data"][0])
        return real_fit(model, x, y, **options)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    config = TrainingConfig(members=2, epochs=1, embedding_dim=4, verbose=0)
    fit(encoded, split.train, split.validation, config)
    _, tail = holdout_slice(split.train, config.early_stopping_fraction)
    assert len(watched) == 2
    for pairs in watched:
        np.testing.assert_array_equal(pairs, encoded.pairs[tail])
        assert not {tuple(p) for p in pairs} & {tuple(p) for p in encoded.pairs[split.validation]}


def test_without_early_stopping_the_validation_part_is_only_watched(monkeypatch):
    encoded = encode(random_ratings(n_users=30, n_movies=60, n_ratings=900))
    split = seed_split(len(encoded.stars))
    callbacks = []
    real_fit = keras.Model.fit

    def recording_fit(model, x, y, **options):
        callbacks.append(options["callbacks"])
        np.testing.assert_array_equal(options["validation_data"][0], encoded.pairs[split.validation])
        assert len(x) == len(split.train)
        return real_fit(model, x, y, **options)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    fit(
        encoded,
        split.train,
        split.validation,
        TrainingConfig(members=1, epochs=1, embedding_dim=4, early_stopping_fraction=0.0, verbose=0),
    )
    assert callbacks == [[]], "nothing chooses an epoch by the validation part"
