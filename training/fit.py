"""Fitting the model: the rating ensemble, member by member, then the ranking tables.

Each rating member stops early on a slice of the training part; the ranking tables are computed
in closed form from the training part (`training.ranking`). Both go into one saved model.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from training.config import TrainingConfig
from training.dataset import Encoded, holdout_slice
from training.model import member_output, pairs_input, ranking_output, recommender
from training.ranking import RankingTables, fit_ranking


@dataclass(frozen=True)
class FittedModel:
    model: keras.Model
    histories: list[dict[str, list[float]]]
    history_validation: str
    fit_seconds: float
    n_fit: int
    ranking: RankingTables
    ranking_seconds: float

    @property
    def ratings_fitted(self) -> int:
        """Ratings seen during fit, summed over every member's epochs."""
        return self.n_fit * sum(len(h["loss"]) for h in self.histories)


def distribution(devices: int) -> Any:
    """A `tf.distribute.MirroredStrategy` over `devices` logical CPU devices, or None for 1.

    The one CPU is split into logical devices, which TensorFlow allows only before it first runs
    anything: `training.run` calls this first. On a machine with GPUs, MirroredStrategy() over them
    takes the same path; across machines, see the README ("Training beyond one machine").
    """
    if devices == 1:
        return None
    import tensorflow as tf

    (cpu,) = tf.config.list_physical_devices("CPU")
    if len(tf.config.get_logical_device_configuration(cpu) or ()) < devices:  # (initialises nothing)
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * devices
            )
        except RuntimeError as error:  # TensorFlow has started already, with fewer devices
            raise ValueError(f"--devices {devices}: {error}") from None
    names = [device.name for device in tf.config.list_logical_devices("CPU")[:devices]]
    print(f"training under MirroredStrategy over {devices} logical CPU devices: {', '.join(names)}")
    return tf.distribute.MirroredStrategy(names)


def fit(
    encoded: Encoded,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    config: TrainingConfig,
    strategy: Any = None,
) -> FittedModel:
    """Fits the members one after another and joins them into one model.

    With early stopping, each member watches a tail slice of the training part and keeps its
    best epoch; without it (the seed preset), the validation part is only watched, as the seed's
    plot does, and never chooses anything. Under a `strategy` (see `distribution`), the model's
    variables are created in its scope, and Keras splits each batch across its devices.
    """
    if strategy is None:
        return _fit(encoded, train_rows, validation_rows, config, distributed=False)
    with strategy.scope():
        fitted = _fit(encoded, train_rows, validation_rows, config, distributed=True)
    # The same layers and weights outside the strategy: evaluated, saved and served as any other.
    plain = keras.models.clone_model(fitted.model)
    plain.set_weights(fitted.model.get_weights())
    return dataclasses.replace(fitted, model=plain)


def _fit(
    encoded: Encoded,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    config: TrainingConfig,
    distributed: bool,
) -> FittedModel:
    fit_rows, stop_rows = holdout_slice(train_rows, config.early_stopping_fraction)
    watch_rows = stop_rows if len(stop_rows) else validation_rows
    targets = encoded.encoders.to_scores(encoded.stars).astype(np.float32)
    x_fit, y_fit = encoded.pairs[fit_rows], targets[fit_rows]
    watched = (encoded.pairs[watch_rows], targets[watch_rows])
    data = {"x": x_fit, "y": y_fit, "batch_size": config.batch_size}
    if distributed:  # a tf.data pipeline, which the strategy splits batch by batch across devices
        data = {"x": batches(x_fit, y_fit, config, shuffle=True)}
        watched = batches(*watched, config)
    callbacks = []
    if len(stop_rows):
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_rmse", patience=config.patience, restore_best_weights=True
            )
        )
    pairs = pairs_input()
    outputs, histories = [], []
    started = time.perf_counter()
    for member in range(config.members):
        output = member_output(pairs, encoded.n_users, encoded.n_movies, config, member)
        member_model = keras.Model(pairs, output, name=f"member{member}")
        member_model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss="binary_crossentropy",
            metrics=[keras.metrics.RootMeanSquaredError(name="rmse")],
        )
        history = member_model.fit(
            **data,
            epochs=config.epochs,
            validation_data=watched,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        histories.append({key: [float(v) for v in values] for key, values in history.history.items()})
        outputs.append(output)
    fit_seconds = time.perf_counter() - started
    tables = fit_ranking(
        encoded.pairs[train_rows],
        encoded.stars[train_rows],
        encoded.n_users,
        encoded.n_movies,
        top_stars=encoded.encoders.rating_max,
        l2=config.ranking_l2,
        rank=config.ranking_rank,
        seed=config.seed,
    )
    ranking_seconds = time.perf_counter() - started - fit_seconds
    label = "early-stopping slice of training" if len(stop_rows) else "validation (watched only)"
    model = recommender(pairs, outputs, ranking_output(pairs, tables))
    return FittedModel(model, histories, label, fit_seconds, len(fit_rows), tables, ranking_seconds)


def batches(x: np.ndarray, y: np.ndarray, config: TrainingConfig, shuffle: bool = False) -> Any:
    """(x, y) as a tf.data pipeline of batches for `config.devices` devices; for training shuffled
    anew each epoch, as Keras shuffles arrays. Every batch must split evenly between the devices
    (a batch of 133 split 67 and 66 fails in the strategy's reduction), so the batch size is a
    multiple of the devices and at most `devices - 1` rows are left out."""
    import tensorflow as tf

    usable = len(x) - len(x) % config.devices
    data = tf.data.Dataset.from_tensor_slices((x[:usable], y[:usable]))
    if shuffle:
        data = data.shuffle(usable, seed=config.seed, reshuffle_each_iteration=True)
    return data.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
