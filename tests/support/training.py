"""`python -m training` run in the test process, with settings small enough for tests."""

from __future__ import annotations

from pathlib import Path

# Small enough that a run takes a few seconds on two cores.
TINY_FLAGS = ("--epochs", "1", "--embedding-dim", "8", "--verbose", "0")
TINY_MEMBERS = 2


def train(data_dir: Path | str, model_dir: Path | str, *flags: str) -> int:
    """`python -m training` in this process with the tiny settings; later flags win."""
    from training.cli import main

    argv = ["--data-dir", str(data_dir), "--model-dir", str(model_dir), "--members", str(TINY_MEMBERS)]
    return main([*argv, *TINY_FLAGS, *flags])
