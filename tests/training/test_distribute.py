"""`--devices N`: the rating members trained under tf.distribute.MirroredStrategy, as they would be
on several GPUs or machines, give a bundle like any other, with the default's figures within noise.

Each run is its own process: logical devices can be made only before TensorFlow first runs, which
it has in this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.bundle import METADATA_FILE, load_bundle
from tests.support import REPO
from tests.support.training import TINY_FLAGS, TINY_MEMBERS

# Noise, measured with these flags: --seed 42, 43 and 44 (which also changes the split) give a
# validation RMSE of 0.555, 0.593 and 0.573; one device and two gave 0.5547 and 0.5583.
RMSE_NOISE = 0.03


def command(data_dir: Path, model_dir: Path, *flags: str) -> list[str]:
    command = [sys.executable, "-m", "training", "--data-dir", str(data_dir), "--model-dir", str(model_dir)]
    command += ["--members", str(TINY_MEMBERS), *TINY_FLAGS, "--epochs", "5", "--batch-size", "64"]
    return [*command, "--learning-rate", "0.01", *flags]


def train(data_dir: Path, model_dir: Path, *flags: str) -> tuple[dict, str]:
    done = subprocess.run(
        command(data_dir, model_dir, *flags), cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((model_dir / "current" / METADATA_FILE).read_text()), done.stdout


@pytest.fixture(scope="module")
def one_device(tiny_data_dir, tmp_path_factory) -> tuple[dict, str]:
    """The default run, with no strategy: what the others are compared with."""
    return train(tiny_data_dir, tmp_path_factory.mktemp("one-device"))


@pytest.mark.timeout(900)
def test_two_devices_under_mirrored_strategy_train_as_well_as_one(tiny_data_dir, tmp_path, one_device):
    default, said = one_device
    assert "MirroredStrategy" not in said, "by default, no strategy"
    mirrored, said = train(tiny_data_dir, tmp_path / "two", "--devices", "2")
    assert "MirroredStrategy over 2 logical CPU devices" in said and "CPU:1" in said
    assert mirrored["hyperparameters"]["devices"] == 2 and default["hyperparameters"]["devices"] == 1
    rmse = [run["metrics"]["model"]["rmse"] for run in (default, mirrored)]
    assert abs(rmse[0] - rmse[1]) < RMSE_NOISE, rmse
    assert rmse[1] < mirrored["metrics"]["global mean"]["rmse"], "it learnt something"
    assert len(mirrored["history"]["members"]) == TINY_MEMBERS
    # The bundle is an ordinary one: the server's reader loads it, its layers named as always.
    names = {layer.name for layer in load_bundle((tmp_path / "two" / "current").resolve()).model.layers}
    assert {f"member{m}_user_embedding" for m in range(TINY_MEMBERS)} <= names


def test_the_batch_must_split_evenly_between_the_devices():
    from training.config import TrainingConfig

    assert TrainingConfig(devices=2, batch_size=256).devices == 2
    with pytest.raises(ValueError, match="--devices 3"):
        TrainingConfig(devices=3, batch_size=256)
