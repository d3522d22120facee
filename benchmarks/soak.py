"""Soak mode: the real server under steady concurrent load for minutes, with live model swaps.

Runs wrk in back-to-back segments (recommendations and /predict in turn) against one server
process for a bounded total time, and between segments publishes a new bundle version (a copy of
the current one under a new name) so the server swaps models while busy. Reports per segment
throughput, p99, errors and resident memory, then the drift: p99 and RSS of the last segments
against the first ones. The bundle folder is copied into a temporary folder; the one given is
never written.

    python -m benchmarks.soak --model-dir models --minutes 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from app.bundle import METADATA_FILE
from app.bundle_store import CURRENT, point_current
from benchmarks.servers import Server, ServerSpec
from benchmarks.wrk import error_count, run_wrk, write_load_files

RESULTS = Path(__file__).with_name("results")


def new_version_of(model_dir: Path, number: int) -> str:
    """Copies the current bundle under a new version name (as training would publish)."""
    source = (model_dir / CURRENT).resolve()
    name = f"{source.name.split('-soak')[0]}-soak{number}"
    shutil.copytree(source, model_dir / name)
    metadata = json.loads((model_dir / name / METADATA_FILE).read_text())
    metadata["version"] = name
    (model_dir / name / METADATA_FILE).write_text(json.dumps(metadata))
    return name


def soak(model_dir: Path, minutes: float, segment: float, connections: int, swap_every: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        work = Path(scratch)
        models = work / "models"
        source = (model_dir / CURRENT).resolve()
        shutil.copytree(source, models / source.name)
        point_current(models, source.name)
        files = write_load_files(models / CURRENT / "encoders.json", work)
        server = Server(ServerSpec("real", models, env={"RELOAD_INTERVAL_S": "1"}), work)
        url = f"http://127.0.0.1:{server.port}"
        segments, swaps, deadline = [], 0, time.monotonic() + minutes * 60
        try:
            while time.monotonic() + segment <= deadline:
                endpoint = ("recommendations", "predict")[len(segments) % 2]
                if swap_every and segments and len(segments) % swap_every == 0:
                    swaps += 1
                    point_current(models, new_version_of(models, swaps))
                run = run_wrk(
                    url, endpoint, files.for_endpoint(endpoint), connections=connections, duration=segment
                )
                run["rss_mb"] = server.memory_mb()["rss_mb"]
                run["model_version"] = server.get_json("/model")["version"]
                segments.append(run)
                print(
                    f"{len(segments):3d} {endpoint:16s} {run['requests_per_s']:8.1f} req/s  "
                    f"p99 {run['latency_ms']['p99']:7.1f} ms  errors {error_count(run)}  "
                    f"rss {run['rss_mb']:7.1f} MB  {run['model_version']}",
                    flush=True,
                )
        finally:
            server.stop()
    return summarise(segments, swaps, minutes, connections)


def summarise(segments: list[dict], swaps: int, minutes: float, connections: int) -> dict:
    """Errors in all, and drift: last two segments of each endpoint against the first two."""
    drift = {}
    for endpoint in ("recommendations", "predict"):
        runs = [s for s in segments if s["endpoint"] == endpoint]
        if len(runs) >= 4:
            first, last = runs[:2], runs[-2:]
            drift[endpoint] = {
                "p99_first_ms": statistics.mean(r["latency_ms"]["p99"] for r in first),
                "p99_last_ms": statistics.mean(r["latency_ms"]["p99"] for r in last),
                "rps_first": statistics.mean(r["requests_per_s"] for r in first),
                "rps_last": statistics.mean(r["requests_per_s"] for r in last),
            }
    return {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": minutes,
        "connections": connections,
        "segments": segments,
        "requests": sum(s["requests"] for s in segments),
        "errors": sum(error_count(s) for s in segments),
        "model_swaps": swaps,
        "versions_seen": sorted({s["model_version"] for s in segments}),
        "rss_first_mb": segments[0]["rss_mb"] if segments else None,
        "rss_last_mb": segments[-1]["rss_mb"] if segments else None,
        "drift": drift,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--minutes", type=float, default=3.0, help="total time, bounded (default 3)")
    parser.add_argument("--segment", type=float, default=15.0, help="seconds per wrk run (default 15)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--swap-every", type=int, default=3, help="publish a new version every N segments; 0: never"
    )
    args = parser.parse_args(argv)
    if not (args.model_dir / CURRENT).exists():
        print(f"no bundle at {args.model_dir / CURRENT}: run python -m training first", file=sys.stderr)
        return 2
    report = soak(args.model_dir, args.minutes, args.segment, args.connections, args.swap_every)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=1))
    print(
        f"\n{report['requests']} requests, {report['errors']} errors, {report['model_swaps']} model swaps, "
        f"RSS {report['rss_first_mb']:.0f} -> {report['rss_last_mb']:.0f} MB"
    )
    for endpoint, d in report["drift"].items():
        print(
            f"{endpoint:16s} p99 {d['p99_first_ms']:.1f} -> {d['p99_last_ms']:.1f} ms, "
            f"{d['rps_first']:.0f} -> {d['rps_last']:.0f} req/s (first two segments -> last two)"
        )
    print(f"saved {path}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
