"""Scale: training time and memory, bundle load time and serving cost against the data's size.

    python -m benchmarks.scale --ratings 1M,5M,25M [--duration 10] [--train-args "..."]

What it measures and reports: benchmarks/README.md. One size at a time, never two processes
measured at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.bundle_store import current_bundle_path
from benchmarks import REPO, log, parser, save
from benchmarks.load import Bench
from benchmarks.synthetic import generate
from benchmarks.training_speed import train
from benchmarks.wrk import ENDPOINTS

ML25M = {"users": 162_541, "movies": 59_047, "ratings": 25_000_095}
TRAIN_ARGS = "--members 1 --epochs 1 --batch-size 4096 --learning-rate 5e-3 --evaluation-users 2000"


def count(text: str) -> int:
    """1M -> 1,000,000; 500k -> 500,000."""
    number, unit = re.fullmatch(r"([\d.]+)([kKmM]?)", text).groups()
    return round(float(number) * {"": 1, "k": 10**3, "m": 10**6}[unit.lower()])


def shape(ratings: int) -> dict[str, int]:
    """Users in proportion to the ratings as in ml-25m, the catalogue growing as ratings^0.6."""
    fraction = ratings / ML25M["ratings"]
    return {
        "users": max(round(ML25M["users"] * fraction), 100),
        "movies": min(max(round(ML25M["movies"] * fraction**0.6), 100), ML25M["movies"]),
        "ratings": ratings,
    }


def serve(models: Path, work: Path, duration: float) -> dict[str, Any]:
    """The real server measured as the load benchmark measures it, at 32 connections, with the
    requests per second per core of the server's CPU."""
    bench = Bench(argparse.Namespace(model_dir=models, real_root=REPO, duration=duration), work)
    result = bench.measure("real", [(endpoint, 32) for endpoint in ENDPOINTS], {"RELOAD_INTERVAL_S": "0"})
    runs = [run for run in result.runs if run.server_cpu_percent]
    per_core = {run.endpoint: round(100 * run.requests_per_s / run.server_cpu_percent, 1) for run in runs}
    return asdict(result) | {"per_core": per_core, "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    arguments = parser("scale", __doc__)
    arguments.add_argument("--ratings", type=lambda t: [count(n) for n in t.split(",")], default="1M,5M,25M")
    arguments.add_argument("--data-root", type=Path, default=Path.home() / ".cache" / "movielens")
    arguments.add_argument("--train-args", default=TRAIN_ARGS, help=f"training flags (default: {TRAIN_ARGS})")
    arguments.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per endpoint")
    arguments.add_argument("--no-serve", action="store_true", help="train only")
    args = arguments.parse_args(argv)
    sizes = []
    for ratings in args.ratings:
        dims, folder = shape(ratings), args.data_root / f"synthetic-{ratings}"
        log(f"{ratings:,} ratings: data {folder} ({dims['users']:,} users, {dims['movies']:,} movies)")
        generate(folder, dims["users"], dims["movies"], ratings)
        with tempfile.TemporaryDirectory(prefix=f"scale-{ratings}-") as scratch:
            models, flags = Path(scratch) / "models", ["--no-feedback", *shlex.split(args.train_args)]
            trained = asdict(train(folder, models, flags, "scale"))
            bundle = current_bundle_path(models)
            trained["bundle_mb"] = {p.name: round(p.stat().st_size / 2**20, 1) for p in bundle.iterdir()}
            print(f"  trained: {json.dumps(trained)}", flush=True)
            served = None if args.no_serve else serve(models, Path(scratch), args.duration)
            print(f"  served: {json.dumps(served)}", flush=True)
        sizes.append({**dims, "training": trained, "serving": served})
    print(f"saved: {save('scale', args, {'sizes': sizes})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
