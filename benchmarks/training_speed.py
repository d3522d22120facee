"""Training speed: the default `python -m training` beside `--preset seed`, on the same data.

    python -m benchmarks.training_speed --data-dir DIR_OR_ZIP [--configurations default,seed,mirrored]

What it measures and reports: benchmarks/README.md. `train` also serves the other benchmarks
that need a bundle trained (load, scale, feedback).
"""

from __future__ import annotations

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
from benchmarks import REPO, log, parser, save
from benchmarks.servers import machine_cpu_seconds

# `mirrored`: the default under tf.distribute.MirroredStrategy over 2 logical CPU devices.
CONFIGURATIONS = {"default": [], "seed": ["--preset", "seed"], "mirrored": ["--devices", "2"]}


@dataclass(frozen=True)
class TrainingRun:
    """One `python -m training` process: how fast (its own timing from metadata.json), how well."""

    configuration: str
    wall_seconds: float
    cpu_percent: float  # of one core
    other_cpu_percent: float
    peak_rss_mb: float
    ratings_per_second: float
    fit_seconds: float
    run_seconds: float
    validation_rmse: float


def train(data_dir: Path | None, model_dir: Path, flags: list[str], name: str = "default") -> TrainingRun:
    """Runs `python -m training FLAGS` into `model_dir`; os.wait4 gives this process's own CPU time
    and peak RSS, however many trainings ran before it."""
    command = [sys.executable, "-m", "training", "--model-dir", str(model_dir), "--verbose", "0", *flags]
    command += ["--data-dir", str(data_dir)] if data_dir is not None else []
    with tempfile.TemporaryFile() as errors:
        machine_before, started = machine_cpu_seconds(), time.monotonic()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        wall, own = time.monotonic() - started, usage.ru_utime + usage.ru_stime
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed:\n{errors.read().decode()[-3000:]}")
    others = max(0.0, machine_cpu_seconds() - machine_before - own)
    metadata = json.loads((current_bundle_path(model_dir) / METADATA_FILE).read_text())
    timing, rmse = metadata["timing"], round(metadata["metrics"]["model"]["rmse"], 4)
    cpu = round(100 * own / wall, 1), round(100 * others / wall, 1), round(usage.ru_maxrss / 1024)
    figures = (timing[key] for key in ("ratings_per_second", "fit_seconds", "total_seconds"))
    return TrainingRun(name, round(wall, 2), *cpu, *figures, rmse)


def main(argv: list[str] | None = None) -> int:
    arguments = parser("training_speed", __doc__)
    arguments.add_argument("--data-dir", type=Path, default=os.environ.get("MOVIELENS_DIR"), help="or a .zip")
    arguments.add_argument("--configurations", type=lambda t: t.split(","), default=["default", "seed"])
    args = arguments.parse_args(argv)
    if not set(args.configurations) <= set(CONFIGURATIONS):
        arguments.error(f"configurations are among {', '.join(CONFIGURATIONS)}")
    runs = []
    for name in args.configurations:
        log(f"training ({name}) ...")
        with tempfile.TemporaryDirectory(prefix=f"bench-train-{name}-") as folder:
            runs.append(train(args.data_dir, Path(folder), CONFIGURATIONS[name], name))
    print("".join(f"{title.replace('_', ' '):>19}" for title in TrainingRun.__dataclass_fields__))
    for run in runs:
        print("".join(f"{v:>19}" if isinstance(v, str) else f"{v:>19,}" for v in astuple(run)))
    print(f"saved: {save('training', args, {'runs': [asdict(r) for r in runs]})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
