"""Training speed: the default `python -m training` beside `--preset seed`, on the same data.

    python -m benchmarks.training_speed --data-dir DIR_OR_ZIP

What it measures and reports: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, astuple, dataclass
from pathlib import Path

from app.bundle import METADATA_FILE
from app.bundle_store import current_bundle_path
from benchmarks import save
from benchmarks.servers import REPO, children_cpu_seconds, machine_cpu_seconds

# `mirrored`: the default under tf.distribute.MirroredStrategy over 2 logical CPU devices.
CONFIGURATIONS = {"default": [], "seed": ["--preset", "seed"], "mirrored": ["--devices", "2"]}
TIMING = ("ratings_per_second", "fit_seconds", "total_seconds")  # metadata.json `timing`, in that order
COLUMNS = ("configuration", "wall s", "cpu%", "other%", "ratings/s", "fit s", "run s", "val RMSE")


@dataclass(frozen=True)
class TrainingRun:
    configuration: str
    wall_seconds: float
    cpu_percent: float  # of one core
    other_cpu_percent: float
    ratings_per_second: float
    fit_seconds: float
    run_seconds: float
    validation_rmse: float


def train(data_dir: Path | None, model_dir: Path, name: str = "default") -> TrainingRun:
    """Runs `python -m training` with a configuration into `model_dir`: how fast, how well."""
    command = [sys.executable, "-m", "training", "--model-dir", str(model_dir), "--verbose", "0"]
    command += CONFIGURATIONS[name] + (["--data-dir", str(data_dir)] if data_dir is not None else [])
    before, machine_before, started = children_cpu_seconds(), machine_cpu_seconds(), time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=3600)
    wall, own = time.monotonic() - started, children_cpu_seconds() - before
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    others = max(0.0, machine_cpu_seconds() - machine_before - own)
    metadata = json.loads((current_bundle_path(model_dir) / METADATA_FILE).read_text())
    timing, rmse = metadata["timing"], round(metadata["metrics"]["model"]["rmse"], 4)
    cpu = round(100 * own / wall, 1), round(100 * others / wall, 1)
    return TrainingRun(name, round(wall, 2), *cpu, *(timing[k] for k in TIMING), rmse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m benchmarks.training_speed", description="Training speed")
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("MOVIELENS_DIR"), help="or a .zip")
    parser.add_argument("--configurations", type=lambda t: t.split(","), default=["default", "seed"])
    args = parser.parse_args(argv)
    if not set(args.configurations) <= set(CONFIGURATIONS):
        parser.error(f"configurations are among {', '.join(CONFIGURATIONS)}")
    runs = []
    for name in args.configurations:
        print(f"training ({name}) ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix=f"bench-train-{name}-") as folder:
            runs.append(train(args.data_dir, Path(folder), name))
    print("".join(f"{title:>14}" for title in COLUMNS))
    for run in runs:
        print("".join(f"{v:>14}" if isinstance(v, str) else f"{v:>14,}" for v in astuple(run)))
    print(f"saved: {save('training', {'command': ' '.join(sys.argv), 'runs': [asdict(r) for r in runs]})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
