"""Fitting the model: the rating ensemble, member by member, then the ranking tables.

Each rating member stops early on a slice of the training part; the ranking tables are computed
in closed form from the training part (`training.ranking`). Both go into one saved model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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


def fit(
    encoded: Encoded, train_rows: np.ndarray, validation_rows: np.ndarray, config: TrainingConfig
) -> FittedModel:
    """Fits the members one after another and joins them into one model.

    With early stopping, each member watches a tail slice of the training part and keeps its
    best epoch; without it (the seed preset), the validation part is only watched, as the seed's
    plot does, and never chooses anything.
    """
    fit_rows, stop_rows = holdout_slice(train_rows, config.early_stopping_fraction)
    watch_rows = stop_rows if len(stop_rows) else validation_rows
    targets = encoded.encoders.to_scores(encoded.stars).astype(np.float32)
    x_fit, y_fit = encoded.pairs[fit_rows], targets[fit_rows]
    watched = (encoded.pairs[watch_rows], targets[watch_rows])
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
            x_fit,
            y_fit,
            batch_size=config.batch_size,
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
