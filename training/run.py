"""One training run, from a data source to a published bundle.

Steps: load and check the ratings, encode ids, split as the seed does, fit each ensemble member
(early stopping looks only at a tail slice of the training part), evaluate on the validation part
beside baselines, and write the bundle. Nothing touches the model folder until the very end, and
then only through `app.bundle.write_bundle`, which publishes atomically.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np

from app.bundle import (
    FORMAT_VERSION,
    Catalogue,
    Encoders,
    Metadata,
    UserRatings,
    new_version,
    write_bundle,
)
from app.scoring import Scorer
from training import evaluate
from training.config import TrainingConfig
from training.data import MovieLens, load
from training.dataset import Encoded, encode, holdout_slice, seed_split
from training.model import ModelConfig, ensemble, member_output, pairs_input
from training.plot import plot_loss


@dataclass(frozen=True)
class FittedModel:
    model: keras.Model
    histories: list[dict[str, list[float]]]
    history_validation: str
    fit_seconds: float
    n_fit: int


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
    model_config = ModelConfig(config.embedding_dim, config.l2, config.activity_l2)
    pairs = pairs_input()
    outputs, histories = [], []
    started = time.perf_counter()
    for member in range(config.members):
        output = member_output(pairs, encoded.n_users, encoded.n_movies, model_config, member)
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
    label = "early-stopping slice of training" if len(stop_rows) else "validation (watched only)"
    return FittedModel(ensemble(pairs, outputs), histories, label, fit_seconds, len(fit_rows))


def evaluate_all(
    encoded: Encoded,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    model: keras.Model,
    config: TrainingConfig,
) -> dict[str, dict[str, float | None]]:
    """Validation figures of the model and of the baselines, by the same code."""
    pairs, stars = encoded.pairs[validation_rows], encoded.stars[validation_rows]
    train_pairs, train_stars = encoded.pairs[train_rows], encoded.stars[train_rows]
    to_scores, to_stars = encoded.encoders.to_scores, encoded.encoders.to_stars
    scorer = Scorer(model)
    biases = evaluate.Biases(train_pairs, train_stars, encoded.n_users, encoded.n_movies)
    popularity = np.bincount(train_pairs[:, 1], minlength=encoded.n_movies).astype(float)
    task = evaluate.ranking_task(
        train_pairs, pairs, stars, encoded.n_users, config.ranking_users, config.seed
    )
    constant = np.full(len(stars), float(train_stars.mean()))
    rows: dict[str, dict[str, float | None]] = {
        "model": {
            **evaluate.rating_metrics(to_stars(scorer.score_pairs(pairs)), stars, to_scores),
            **evaluate.rank_with(scorer.score_users, *task),
        },
        "user+movie biases": {
            **evaluate.rating_metrics(biases.predict(pairs), stars, to_scores),
            **evaluate.rank_with(biases.score_users, *task),
        },
        "global mean": evaluate.rating_metrics(constant, stars, to_scores),
        "most popular": evaluate.rank_with(
            lambda users: np.broadcast_to(popularity, (len(users), len(popularity))), *task
        ),
    }
    columns = sorted({column for row in rows.values() for column in row}, key=_column_order)
    return {name: {c: row.get(c) for c in columns} for name, row in rows.items()}


def format_table(metrics: dict[str, dict[str, float | None]]) -> str:
    """The metrics as a fixed-width text table, one row per model or baseline."""
    columns = list(next(iter(metrics.values())))
    lines = [f"{'':20}" + "".join(f"{c:>14}" for c in columns)]
    for name, row in metrics.items():
        cells = "".join(f"{'-' if row[c] is None else f'{row[c]:.4f}':>14}" for c in columns)
        lines.append(f"{name:20}{cells}")
    return "\n".join(lines)


def run(source: Path, model_dir: Path, config: TrainingConfig) -> Path:
    """Trains on `source`, evaluates, writes and publishes a bundle; returns its folder."""
    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    data = load(source)
    encoded = encode(data.ratings)
    split = seed_split(len(encoded.stars), config.validation_fraction, config.seed)
    fitted = fit(encoded, split.train, split.validation, config)
    metrics = evaluate_all(encoded, split.train, split.validation, fitted.model, config)
    print("\nValidation figures (stars for rmse/mae; ranking over unrated movies):")
    print(format_table(metrics))
    version = new_version()
    metadata = Metadata(
        version=version,
        created_at=datetime.now(UTC),
        format_version=FORMAT_VERSION,
        **_description(data, encoded, split.train, split.validation, fitted, metrics, config),
        timing={
            "fit_seconds": round(fitted.fit_seconds, 2),
            "ratings_per_second": round(_ratings_fitted(fitted) / fitted.fit_seconds),
            "total_seconds": round(time.perf_counter() - started, 2),
        },
    )
    return write_bundle(
        model_dir,
        model=fitted.model,
        encoders=encoded.encoders,
        metadata=metadata,
        catalogue=_catalogue(data, encoded.encoders),
        ratings=UserRatings.from_pairs(
            encoded.pairs[:, 0], encoded.pairs[:, 1], encoded.stars, encoded.n_users
        ),
        write_extras=lambda folder: plot_loss(
            fitted.histories, fitted.history_validation, folder / "loss.png"
        ),
        keep=config.keep,
    )


def _catalogue(data: MovieLens, encoders: Encoders) -> Catalogue:
    movies = data.movies.loc[encoders.movies]
    return Catalogue(
        titles=movies["title"].tolist(),
        genres=[g.split("|") if g != "(no genres listed)" else [] for g in movies["genres"]],
    )


def _ratings_fitted(fitted: FittedModel) -> int:
    return fitted.n_fit * sum(len(h["loss"]) for h in fitted.histories)


def _description(
    data: MovieLens,
    encoded: Encoded,
    train_rows: np.ndarray,
    validation_rows: np.ndarray,
    fitted: FittedModel,
    metrics: dict,
    config: TrainingConfig,
) -> dict[str, Any]:
    return {
        "data": {
            "source": data.source,
            "sha256": data.sha256,
            "ratings": len(encoded.stars),
            "users": encoded.n_users,
            "movies": encoded.n_movies,
        },
        "split": {
            "method": "shuffle with RandomState(seed), first part train, rest validation",
            "seed": config.seed,
            "validation_fraction": config.validation_fraction,
            "train": len(train_rows),
            "validation": len(validation_rows),
            "early_stopping_slice": len(train_rows) - fitted.n_fit,
        },
        "hyperparameters": dataclasses.asdict(config),
        "metrics": metrics,
        "history": {"validation_curve": fitted.history_validation, "members": fitted.histories},
        "libraries": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "tensorflow": sys.modules["tensorflow"].__version__ if "tensorflow" in sys.modules else None,
            "numpy": np.__version__,
        },
    }


def _column_order(column: str) -> tuple[int, str]:
    order = ["bce", "rmse", "mae", "precision@10", "recall@10", "ndcg@10"]
    return (order.index(column) if column in order else len(order), column)
