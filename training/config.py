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
    ranking_l2: float = 80.0
    ranking_rank: int = 256
    early_stopping_fraction: float = 0.05
    patience: int = 1
    validation_fraction: float = 0.1
    seed: int = 42
    evaluation_users: int | None = 5000
    keep: int = 3
    verbose: int | str = "auto"
    devices: int = 1

    def __post_init__(self) -> None:
        """Rejects values that would crash mid-run or silently train on nonsense, in one line."""
        checks = {
            "members": self.members >= 1,
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "embedding_dim": self.embedding_dim >= 1,
            "l2": self.l2 >= 0,
            "activity_l2": self.activity_l2 >= 0,
            "ranking_l2": self.ranking_l2 > 0,
            "ranking_rank": self.ranking_rank >= 1,
            "early_stopping_fraction": 0 <= self.early_stopping_fraction < 1,
            "patience": self.patience >= 0,
            "validation_fraction": 0 < self.validation_fraction < 1,
            "seed": 0 <= self.seed < 2**32,
            "evaluation_users": self.evaluation_users is None or self.evaluation_users >= 1,
            "keep": self.keep >= 1,
            "verbose": self.verbose in ("auto", 0, 1, 2),
            "devices": self.devices >= 1 and self.batch_size % self.devices == 0,
        }
        for name, valid in checks.items():
            if not valid:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)!r} is out of range")


# The seed notebook as written (with the row-wise dot product): one model, 5 epochs at batch 64.
SEED_PRESET = {
    "members": 1,
    "epochs": 5,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "activity_l2": 0.0,
    "early_stopping_fraction": 0.0,
}
