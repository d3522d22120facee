"""The knobs of a training run, apart from the code that uses them so `--help` stays instant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingConfig:
    """Every knob of a run; the defaults beat the seed on its own split (see README)."""

    members: int = 3
    epochs: int = 4
    batch_size: int = 256
    learning_rate: float = 3e-3
    embedding_dim: int = 50
    l2: float = 1e-6
    activity_l2: float = 3e-3
    early_stopping_fraction: float = 0.05
    patience: int = 1
    validation_fraction: float = 0.1
    seed: int = 42
    ranking_users: int | None = 5000
    keep: int = 3
    verbose: int | str = "auto"


# The seed notebook as written (with the row-wise dot product): one model, 5 epochs at batch 64.
SEED_PRESET = {
    "members": 1,
    "epochs": 5,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "activity_l2": 0.0,
    "early_stopping_fraction": 0.0,
}
