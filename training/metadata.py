"""What a bundle says about the run that made it: data, split, settings, figures, libraries."""

from __future__ import annotations

import dataclasses
import platform
import sys
from datetime import UTC, datetime
from typing import Any

import keras
import numpy as np

from app.bundle import FORMAT_VERSION, FoldIn, Metadata
from training.config import TrainingConfig
from training.data import MovieLens
from training.dataset import Encoded, Split
from training.evaluate import Table
from training.fit import FittedModel


def describe_run(
    version: str,
    data: MovieLens,
    feedback: dict[str, Any],
    encoded: Encoded,
    split: Split,
    fitted: FittedModel,
    metrics: Table,
    notes: list[str],
    config: TrainingConfig,
    total_seconds: float,
) -> Metadata:
    return Metadata(
        version=version,
        created_at=datetime.now(UTC),
        format_version=FORMAT_VERSION,
        data={
            "source": data.source,
            "sha256": data.sha256,
            "ratings": len(encoded.stars),
            "users": encoded.n_users,
            "movies": encoded.n_movies,
            **feedback,
        },
        split={
            "method": "shuffle with RandomState(seed), first part train, rest validation",
            "seed": config.seed,
            "validation_fraction": config.validation_fraction,
            "train": len(split.train),
            "validation": len(split.validation),
            "early_stopping_slice": len(split.train) - fitted.n_fit,
        },
        hyperparameters=dataclasses.asdict(config),
        metrics=metrics,
        evaluation_notes=notes,
        fold_in=FoldIn(rating_l2=config.activity_l2),
        history={"validation_curve": fitted.history_validation, "members": fitted.histories},
        libraries=_libraries(),
        timing={
            "fit_seconds": round(fitted.fit_seconds, 2),
            "ratings_per_second": round(fitted.ratings_fitted / fitted.fit_seconds),
            "ranking_seconds": round(fitted.ranking_seconds, 2),
            "total_seconds": round(total_seconds, 2),
        },
    )


def _libraries() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "tensorflow": sys.modules["tensorflow"].__version__ if "tensorflow" in sys.modules else None,
        "numpy": np.__version__,
    }
