"""One training run, from a data source to a published bundle.

Steps: load and check the ratings, merge in the ratings stored through the API, encode ids, split
as the seed does, fit the ensemble (early stopping looks only at a tail slice of the training
part), evaluate on the validation part beside baselines, and publish the bundle. Nothing touches
the model folder until the very end, and then only through `app.bundle_store.publish_bundle`,
which publishes atomically.
"""

from __future__ import annotations

import time
from pathlib import Path

import keras

from app.bundle import LOSS_PLOT_FILE, Catalogue, Encoders, RatingsByUser, new_version, write_bundle_files
from app.bundle_store import publish_bundle
from training.config import TrainingConfig
from training.data import MovieLens, load
from training.dataset import encode, seed_split
from training.evaluate import evaluate_all, format_table
from training.feedback import merge_feedback, read_feedback
from training.fit import distribution, fit
from training.metadata import describe_run
from training.plot import plot_loss


def run(source: Path, model_dir: Path, config: TrainingConfig, feedback_url: str | None = None) -> Path:
    """Trains on `source` and the ratings stored in `feedback_url` (if given), evaluates, writes
    and publishes a bundle; returns its folder."""
    started = time.perf_counter()
    strategy = distribution(config.devices)  # before TensorFlow runs anything
    keras.utils.set_random_seed(config.seed)
    data, feedback = merge_feedback(load(source), read_feedback(feedback_url) if feedback_url else None)
    encoded = encode(data.ratings)
    split = seed_split(len(encoded.stars), config.validation_fraction, config.seed)
    fitted = fit(encoded, split.train, split.validation, config, strategy)
    metrics, notes = evaluate_all(encoded, split.train, split.validation, fitted.model, config)
    print("\nValidation figures (stars for rmse/mae; top 10 among unrated movies):")
    print(format_table(metrics), *notes, sep="\n")
    version = new_version()
    metadata = describe_run(
        version, data, feedback, encoded, split, fitted, metrics, notes, config, time.perf_counter() - started
    )

    def write(folder: Path) -> None:
        write_bundle_files(
            folder,
            model=fitted.model,
            encoders=encoded.encoders,
            metadata=metadata,
            catalogue=_catalogue(data, encoded.encoders),
            ratings=RatingsByUser.from_pairs(
                encoded.pairs[:, 0], encoded.pairs[:, 1], encoded.stars, encoded.n_users
            ),
        )
        plot_loss(fitted.histories, fitted.history_validation, folder / LOSS_PLOT_FILE)

    return publish_bundle(model_dir, version, write, keep=config.keep)


def _catalogue(data: MovieLens, encoders: Encoders) -> Catalogue:
    movies = data.movies.loc[encoders.movies]
    return Catalogue(
        titles=movies["title"].tolist(),
        genres=[g.split("|") if g != "(no genres listed)" else [] for g in movies["genres"]],
    )
