"""Soak: the real server under steady load for minutes, with live model swaps.

    python -m benchmarks.soak --model-dir models --minutes 3

What it measures and reports: benchmarks/README.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean

from app.bundle_store import current_bundle_path, point_current
from benchmarks import parser, save
from benchmarks.servers import Server, copy_bundle_as, copy_models
from benchmarks.wrk import ENDPOINTS, WrkRun, run_wrk, write_load_files


@dataclass(frozen=True)
class Segment:
    run: WrkRun
    rss_mb: float
    model_version: str  # the one /model named right after the segment

    def __str__(self) -> str:
        figures = (
            f"{self.run.requests_per_s:8.1f} req/s  p99 {self.run.p99_text:>7} ms  errors {self.run.errors}"
        )
        return f"{self.run.endpoint:16s} {figures}  rss {self.rss_mb:7.1f} MB  {self.model_version}"


def soak(model_dir: Path, minutes: float, seconds: float, connections: int, swap_every: int) -> list[Segment]:
    """Back-to-back wrk segments, the endpoints in turn, a new version every `swap_every` segments."""
    segments: list[Segment] = []
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        models = copy_models(model_dir, Path(scratch) / "models")
        files, first = (
            write_load_files(models, Path(scratch)),
            current_bundle_path(models).name,
        )
        with Server(models, {"RELOAD_INTERVAL_S": "1"}, log_dir=Path(scratch)) as server:
            deadline = time.monotonic() + minutes * 60
            while time.monotonic() + seconds <= deadline:
                endpoint = ENDPOINTS[len(segments) % 2]
                if swap_every and segments and len(segments) % swap_every == 0:
                    new = copy_bundle_as(current_bundle_path(models), models, f"{first}-soak{len(segments)}")
                    point_current(models, new.name)
                run = run_wrk(server.url, endpoint, files[endpoint], connections, seconds)
                segments.append(Segment(run, server.memory_mb()[1], server.fetch("/model")["version"]))
                print(f"{len(segments):3d} {segments[-1]}", flush=True)
    return segments


def main(argv: list[str] | None = None) -> int:
    arguments = parser("soak", __doc__)
    arguments.add_argument("--model-dir", type=Path, default=Path("models"))
    arguments.add_argument("--minutes", type=float, default=3.0, help="total time, bounded (default 3)")
    arguments.add_argument("--segment", type=float, default=15.0, help="seconds per wrk run (default 15)")
    arguments.add_argument("--connections", type=int, default=32)
    arguments.add_argument(
        "--swap-every", type=int, default=3, help="a new version every N segments; 0: never"
    )
    args = arguments.parse_args(argv)
    segments = soak(args.model_dir, args.minutes, args.segment, args.connections, args.swap_every)
    if not segments:
        raise SystemExit("no segment fits in --minutes: give more minutes or a shorter --segment")
    errors, versions = sum(s.run.errors for s in segments), sorted({s.model_version for s in segments})
    print(
        f"\n{sum(s.run.requests for s in segments)} requests, {errors} errors, {len(versions) - 1} live swaps"
    )
    print(f"RSS {segments[0].rss_mb:.0f} -> {segments[-1].rss_mb:.0f} MB (first segment -> last)")
    drift = {}
    for endpoint in ENDPOINTS:  # first two segments against the last two, given four or more
        if len(runs := [s.run for s in segments if s.run.endpoint == endpoint]) >= 4:
            p99 = [mean(r.p99_ms for r in runs[:2]), mean(r.p99_ms for r in runs[-2:])]
            rps = [mean(r.requests_per_s for r in runs[:2]), mean(r.requests_per_s for r in runs[-2:])]
            drift[endpoint] = {"p99_ms": p99, "requests_per_s": rps}
            print(f"{endpoint:16s} p99 {p99[0]:.1f} -> {p99[1]:.1f} ms, {rps[0]:.0f} -> {rps[1]:.0f} req/s")
    document = {"errors": errors, "versions": versions, "drift_first_last": drift}
    print(f"saved: {save('soak', args, document | {'segments': [asdict(s) for s in segments]})}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
