"""Scale: training time and memory, bundle load time and serving cost against the data's size.

    python -m benchmarks.scale --ratings 1M,5M,25M [--duration 10]

For each size, a MovieLens-shaped synthetic set (`benchmarks.synthetic`: users in proportion to
the ratings as in ml-25m, the catalogue growing as ratings^0.6 up to ml-25m's 59,047 movies) is
generated once under --data-root, trained on with `python -m training` (the README's flags for
ml-25m's size unless --train-args says otherwise) in a process of its own, whose wall time and
peak RSS are taken; then the bundle is served by `python -m app` (time to ready, RSS) and driven
with wrk for --duration seconds per endpoint at 32 connections, its CPU time giving requests per
second per core. One size at a time, never two processes measured at once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.bundle import METADATA_FILE
from app.bundle_store import current_bundle_path
from benchmarks import save
from benchmarks.servers import REPO, Server
from benchmarks.synthetic import generate
from benchmarks.wrk import ENDPOINTS, run_wrk, write_load_files

ML25M = {"users": 162_541, "movies": 59_047, "ratings": 25_000_095}
TRAIN_ARGS = "--members 1 --epochs 1 --batch-size 4096 --learning-rate 5e-3 --evaluation-users 2000"
# `python -m training` in a process that reports its own peak RSS (kB) on its way out.
PEAK_RSS = (
    "import atexit, resource, runpy, sys; "
    "atexit.register(lambda: print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
    "file=sys.stderr)); sys.argv = ['training', *sys.argv[1:]]; "
    "runpy.run_module('training', run_name='__main__')"
)


def count(text: str) -> int:
    number, unit = re.fullmatch(r"([\d.]+)([kKmM]?)", text).groups()
    return round(float(number) * {"": 1, "k": 10**3, "m": 10**6}[unit.lower()])


def shape(ratings: int) -> dict[str, int]:
    """Users and movies for a synthetic set of `ratings`, shaped as ml-25m."""
    fraction = ratings / ML25M["ratings"]
    return {
        "users": max(round(ML25M["users"] * fraction), 100),
        "movies": min(max(round(ML25M["movies"] * fraction**0.6), 100), ML25M["movies"]),
        "ratings": ratings,
    }


def train(data: Path, model_dir: Path, flags: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-c", PEAK_RSS, "--data-dir", str(data), "--model-dir", str(model_dir)]
    command += ["--verbose", "0", "--no-feedback", *flags]
    started, load = time.monotonic(), os.getloadavg()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=4 * 3600)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"training failed ({done.returncode}):\n{done.stderr[-3000:]}")
    peak = int(re.search(r"PEAK_RSS_KB (\d+)", done.stderr).group(1))
    bundle = current_bundle_path(model_dir)
    metadata = json.loads((bundle / METADATA_FILE).read_text())
    files = {path.name: round(path.stat().st_size / 2**20, 1) for path in bundle.iterdir() if path.is_file()}
    return {
        "bundle_mb": files,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak / 1024),
        "timing": metadata["timing"],
        "rmse": round(metadata["metrics"]["model"]["rmse"], 4),
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
    }


def serve(model_dir: Path, work: Path, duration: float) -> dict[str, Any]:
    files = write_load_files(current_bundle_path(model_dir), work)
    with Server(model_dir, {"RELOAD_INTERVAL_S": "0"}, log_dir=work) as server:
        result: dict[str, Any] = {"ready_s": round(server.ready_seconds, 2), "rss_mb": server.memory_mb()}
        for endpoint in ENDPOINTS:
            run_wrk(server.url, endpoint, files[endpoint], 8, 2)  # warm-up
            before = server.cpu_seconds()
            run = run_wrk(server.url, endpoint, files[endpoint], 32, duration)
            cores = (server.cpu_seconds() - before) / run.seconds
            result[endpoint] = {
                "requests_per_s": run.requests_per_s,
                "p99_ms": run.p99_ms,
                "errors": run.errors,
                "cores": round(cores, 2),
                "per_core": round(run.requests_per_s / cores, 1) if cores else None,
                "load_average": os.getloadavg(),
            }
        result["peak_rss_mb"] = server.memory_mb()[0]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--ratings", type=lambda t: [count(n) for n in t.split(",")], default="1M,5M,25M")
    parser.add_argument("--data-root", type=Path, default=Path.home() / ".cache" / "movielens")
    parser.add_argument("--train-args", default=TRAIN_ARGS, help=f"training flags (default: {TRAIN_ARGS})")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per endpoint")
    parser.add_argument("--no-serve", action="store_true", help="train only")
    args = parser.parse_args(argv)
    sizes = []
    for ratings in args.ratings:
        dims = shape(ratings)
        folder = args.data_root / f"synthetic-{ratings}"
        print(
            f"{ratings:,} ratings: data {folder} ({dims['users']:,} users, {dims['movies']:,} movies)",
            flush=True,
        )
        generate(folder, dims["users"], dims["movies"], ratings)
        with tempfile.TemporaryDirectory(prefix=f"scale-{ratings}-") as scratch:
            work = Path(scratch)
            trained = train(folder, work / "models", shlex.split(args.train_args))
            print(f"  trained: {json.dumps(trained)}", flush=True)
            served = None if args.no_serve else serve(work / "models", work, args.duration)
            print(f"  served: {json.dumps(served)}", flush=True)
        sizes.append({**dims, "training": trained, "serving": served})
    document = {"command": " ".join(["python -m benchmarks.scale", *(argv or sys.argv[1:])]), "sizes": sizes}
    print(f"saved: {save('scale', document | {'settings': vars(args)})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
