"""Training speed: the default `python -m training` beside `--preset seed`, on the same data.

Each run is the real command in its own process, writing to a temporary model folder (the served
bundle is never touched). Reported: ratings per second during fit and fit seconds (from the
bundle's metadata.json `timing`), the run's own total, the wall time of the whole command
(interpreter start, imports and bundle writing included), and the validation RMSE it reached.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.servers import REPO, machine_cpu_seconds

CONFIGURATIONS = {"default": [], "seed": ["--preset", "seed"]}
LAST_RUN: dict[str, float] = {}  # CPU figures of the latest `train`


def train(data_dir: Path | None, model_dir: Path, extra: list[str], timeout: float = 3600) -> float:
    """Runs `python -m training` into `model_dir`; returns its wall time in seconds."""
    command = [sys.executable, "-m", "training", "--model-dir", str(model_dir), "--verbose", "0", *extra]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    started, machine_before = time.monotonic(), machine_cpu_seconds()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime
    LAST_RUN.update(
        cpu_percent=round(100 * own / wall, 1),
        other_processes_cpu_percent=round(
            max(0.0, 100 * (machine_cpu_seconds() - machine_before - own) / wall), 1
        ),
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall


def measure(data_dir: Path | None, configurations: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in configurations:
        with tempfile.TemporaryDirectory(prefix=f"bench-train-{name}-") as folder:
            print(f"training ({name}) ...", file=sys.stderr, flush=True)
            wall = train(data_dir, Path(folder), CONFIGURATIONS[name])
            metadata = json.loads((Path(folder) / "current" / "metadata.json").read_text())
        timing = metadata.get("timing", {})
        rows.append(
            {
                "configuration": name,
                "command": "python -m training " + " ".join(CONFIGURATIONS[name] or ["(defaults)"]),
                "ratings_per_second": timing.get("ratings_per_second"),
                "fit_seconds": timing.get("fit_seconds"),
                "run_seconds": timing.get("total_seconds"),
                "wall_seconds": round(wall, 2),
                "validation_rmse": metadata.get("metrics", {}).get("model", {}).get("rmse"),
                "training_cpu_percent": LAST_RUN.get("cpu_percent"),
                # CPU other processes used meanwhile: training wants both cores, so this slows it.
                "other_processes_cpu_percent": LAST_RUN.get("other_processes_cpu_percent"),
                "hyperparameters": metadata.get("hyperparameters"),
                "data": metadata.get("data"),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    header = f"{'configuration':<15}{'ratings/s':>11}{'fit s':>8}{'run s':>8}{'wall s':>8}{'val RMSE':>10}"
    header += f"{'cpu%':>7}{'other%':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        rmse = row["validation_rmse"]
        lines.append(
            f"{row['configuration']:<15}{row['ratings_per_second'] or 0:>11,}{row['fit_seconds'] or 0:>8.1f}"
            f"{row['run_seconds'] or 0:>8.1f}{row['wall_seconds']:>8.1f}"
            f"{'-' if rmse is None else f'{rmse:.4f}':>10}"
            f"{row['training_cpu_percent'] or 0:>7.0f}{row['other_processes_cpu_percent'] or 0:>8.0f}"
        )
    return "\n".join(lines)
