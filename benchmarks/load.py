"""The load benchmark: the real server beside the floor and naive references, under the same load.

    python -m benchmarks.load --data-dir DIR --model-dir DIR [--duration 10] [--repeat 3]

What it measures and reports: benchmarks/README.md. `benchmarks.sweep` reuses its pieces.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.bundle import METADATA_FILE
from app.bundle_store import CURRENT, current_bundle_path
from benchmarks import REPO, RESULTS, log, parser, report, save, stamp, training_speed
from benchmarks.servers import Server, machine_cpu_seconds
from benchmarks.wrk import ENDPOINTS, ERROR_FIELDS, INSTALL_HINT, WrkRun, known_ids, run_wrk, write_load_files

OTHERS_LIMIT_PERCENT = 15.0  # CPU (% of a core) of other processes above which a run is not clean
SETTLE_S = 15.0  # a server whose backlog does not drain within this after a run is restarted
WARMUP_S = 2.0
NAIVE_MAX_S = 10.0  # the naive server's runs last min(--duration, this)
ONE_BLAS_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


@dataclass
class ServerResult:
    """One server's figures under a plan (several rounds merged by `median`)."""

    name: str
    env: dict[str, str]
    ready_seconds: float
    peak_rss_mb: float = 0.0
    rss_mb: float = 0.0
    runs: list[WrkRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    restarts: int = 0
    cpu_speed: list[float] = field(default_factory=list)  # `cpu_speed()` before and after each round
    top10: dict[int, list[tuple[int, float]]] | None = None  # check user: (movie id, stars) ...
    predict: list[float | None] | None = None  # stars for the check body's pairs
    rounds: int = 1

    def find(self, endpoint: str, connections: int) -> WrkRun | None:
        return next((r for r in self.runs if (r.endpoint, r.connections) == (endpoint, connections)), None)

    def note(self, text: str) -> None:
        log(f"[{self.name}] {text}")
        self.notes.append(text)


class Bench:
    """Measures one server at a time against the same load files, under the same rules."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder, self.stamp = args, folder, stamp()
        self.files, users = write_load_files(args.model_dir, folder), known_ids(args.model_dir)[0]
        picked = np.random.default_rng(7).choice(len(users), min(6, len(users)), replace=False)
        self.check_users = sorted({users[0], *(users[i] for i in picked)})
        self.check_body = json.loads(self.files["predict"].read_text().splitlines()[0])
        self.probe = f"/users/{self.check_users[0]}/recommendations?k=10"

    def start(self, name: str, env: dict[str, str]) -> Server:
        log(f"[{name}] starting ...")
        if name == "real":
            server = Server(self.args.model_dir, env, root=self.args.real_root, log_dir=self.folder)
        else:  # one BLAS thread: the floor's matrix-vector products only lose from more
            kind = dict(module="benchmarks.references", args=[name], log_dir=self.folder)
            server = Server(self.args.model_dir, ONE_BLAS_THREAD, **kind)
        log(f"[{name}] ready in {server.ready_seconds:.2f} s (pid {server.pid}, port {server.port})")
        return server

    def measure(self, name: str, plan: list, env: dict, answers=False, profile=False) -> ServerResult:
        """Starts the server, runs `plan` [(endpoint, connections)], a warm-up first per endpoint,
        restarts it after a run whose backlog does not drain, optionally profiles, stops it."""
        duration = min(self.args.duration, NAIVE_MAX_S) if name == "naive" else self.args.duration
        speed, server = cpu_speed(), self.start(name, env)
        result = ServerResult(name, env, round(server.ready_seconds or 0.0, 3), cpu_speed=[speed])
        try:
            if answers:
                self.answers(server, result)
            for i, (endpoint, connections) in enumerate(plan):
                if name != "naive" and endpoint not in [e for e, _ in plan[:i]]:
                    self.run(server, endpoint, min(connections, 8), WARMUP_S)
                result.runs.append(run := self.run(server, endpoint, connections, duration))
                log(f"[{name}] {report.run_line(run)}")
                if run.other_cpu_percent > OTHERS_LIMIT_PERCENT:  # the machine is shared
                    busy = f"other processes used {run.other_cpu_percent:.0f}% of a core"
                    result.note(f"{endpoint} c={connections}: {busy}: its figures are not clean")
                if not self.settle(server):  # a backlog that would leak into the next run
                    result.note(f"restarted after {endpoint} c={connections}: backlog still there")
                    result.peak_rss_mb = max(result.peak_rss_mb, server.memory_mb()[0])
                    server.stop(kill=True)
                    server, result.restarts = self.start(name, env), result.restarts + 1
            for endpoint in dict.fromkeys(e for e, _ in plan) if profile else ():
                self.profile(server, endpoint)
            peak, result.rss_mb = server.memory_mb()
            result.peak_rss_mb = max(result.peak_rss_mb, peak)
        except BaseException:
            log(f"[{name}] failed; server log tail:\n{server.log(20)}")
            raise
        finally:
            server.stop()
        result.cpu_speed.append(cpu_speed())
        return result

    def run(self, server: Server, endpoint: str, connections: int, duration: float) -> WrkRun:
        """One wrk run, with the CPU the server and other processes used and the mean batch size."""
        batches, before = batch_counters(server, endpoint), clocks(server)
        try:
            wrk = run_wrk(server.url, endpoint, self.files[endpoint], connections, duration)
        except RuntimeError as error:
            state = "running" if server.process.poll() is None else f"exited ({server.process.returncode})"
            raise RuntimeError(f"{error}; the server is {state}") from error
        busy, wrk_busy, machine, elapsed = (b - a for a, b in zip(before, clocks(server), strict=True))
        others = max(0.0, 100 * (machine - busy - wrk_busy) / elapsed)
        size, calls = (b - a for a, b in zip(batches, batch_counters(server, endpoint), strict=True))
        cpu = {"server_cpu_percent": round(100 * busy / elapsed, 1), "other_cpu_percent": round(others, 1)}
        return replace(wrk, **cpu, mean_batch_size=round(size / calls, 2) if calls else None)

    def settle(self, server: Server) -> bool:
        """True once a request queued behind any backlog answers within SETTLE_S seconds."""
        try:
            server.fetch(self.probe, timeout=SETTLE_S)
        except OSError:
            return False
        return True

    def answers(self, server: Server, result: ServerResult) -> None:
        """The server's top 10 for the check users and its answer to the check body, to compare."""
        result.top10 = {}
        for user in self.check_users:
            found = server.fetch(f"/users/{user}/recommendations?k=10", timeout=60)["recommendations"]
            result.top10[user] = [(r["movie_id"], r["predicted_rating"]) for r in found]
        predictions = server.fetch("/predict", self.check_body, timeout=60)["predictions"]
        result.predict = [p["predicted_rating"] for p in predictions]

    def profile(self, server: Server, endpoint: str) -> None:
        """One more run at 32 connections with py-spy attached (not counted: sampling slows the server),
        saved as a flame graph with a tower per thread and native frames (garbage collection too)."""
        out, seconds = RESULTS / f"profile-{self.stamp}-{endpoint}.svg", max(2, int(self.args.duration) - 1)
        command = [py_spy(), "record", "-p", str(server.pid), "-d", str(seconds), "-r", "100", "-o", str(out)]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
        with subprocess.Popen([*command, "--threads", "--native"], **quiet) as recorder:
            rps = self.run(server, endpoint, 32, self.args.duration).requests_per_s
            if recorder.wait(seconds + 60) or not out.exists():
                raise RuntimeError(f"py-spy failed ({recorder.returncode}): {recorder.stderr.read().strip()}")
        log(f"[profile] {endpoint} at 32 connections ({rps:.0f} req/s while sampled): {out}")
        self.settle(server)


def py_spy() -> str | None:
    return shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def clocks(server: Server) -> tuple[float, float, float, float]:
    """CPU seconds of the server, of wrk (this process's waited-for children) and of the whole
    machine, and the time: what a run's CPU shares are computed from."""
    wrk = sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    return server.cpu_seconds(), wrk, machine_cpu_seconds(), time.monotonic()


def batch_counters(server: Server, endpoint: str) -> tuple[float, float]:
    """(sum, count) of the real server's model_batch_size histogram for `endpoint`; zeros elsewhere."""
    kind = "recommend" if endpoint == "recommendations" else "predict"
    try:
        return tuple(server.metric(f'model_batch_size_{part}{{kind="{kind}"}}') for part in ("sum", "count"))
    except OSError:  # the references have no /metrics
        return 0.0, 0.0


def cpu_speed() -> float:
    """Millions of iterations per second of a fixed pure-Python loop (best of 5): the machine's speed."""
    loop = "total = 0\nfor i in range(200_000):\n    total += i * i % 7"
    return round(0.2 / min(timeit.repeat(loop, number=1, repeat=5)), 2)


def median(results: list[ServerResult]) -> ServerResult:
    """One result for several rounds of the same plan: per run, the round with the median throughput
    (its latencies with it), errors summed over the rounds, each round's throughput and p99 kept."""
    runs = []
    for same in zip(*(result.runs for result in results), strict=True):
        middle = sorted(same, key=lambda run: run.requests_per_s)[len(same) // 2]
        errors = {name: sum(getattr(run, name) for run in same) for name in ERROR_FIELDS}
        rps, p99 = tuple(run.requests_per_s for run in same), tuple(run.p99_ms for run in same)
        others = max(run.other_cpu_percent for run in same)
        runs.append(replace(middle, **errors, other_cpu_percent=others, rps_rounds=rps, p99_rounds=p99))
    return replace(
        results[0],
        ready_seconds=float(np.median([r.ready_seconds for r in results])),
        peak_rss_mb=max(r.peak_rss_mb for r in results),
        rss_mb=max(r.rss_mb for r in results),
        runs=runs,
        notes=[note for r in results for note in r.notes],
        restarts=sum(r.restarts for r in results),
        cpu_speed=[speed for r in results for speed in r.cpu_speed],
        rounds=len(results),
    )


def arguments(module: str, doc: str | None, connections: list[int]) -> argparse.ArgumentParser:
    """The parser with the options load and sweep share."""
    found = parser(module, doc)
    found.add_argument("--data-dir", type=Path, default=os.environ.get("MOVIELENS_DIR"), help="to train")
    found.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    found.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    found.add_argument("--connections", type=lambda t: [int(c) for c in t.split(",")], default=connections)
    found.add_argument("--repeat", type=int, default=1, help="interleaved rounds, median figures")
    found.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="real server setting")
    found.add_argument("--real-root", type=Path, default=REPO, help="a checkout whose `app` is served")
    return found


def parse_env(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs, keys upper-cased as the server's settings read them."""
    if bad := [pair for pair in pairs if "=" not in pair or pair.startswith("=")]:
        raise SystemExit(f"a setting is KEY=VALUE, got {bad[0]!r}")
    return {key.strip().upper(): value.strip() for key, _, value in (pair.partition("=") for pair in pairs)}


@contextmanager
def session(args: argparse.Namespace, profile=False) -> Iterator[tuple[Bench, dict[str, Any]]]:
    """Checks the tools, trains a bundle if there is none, writes the load files; yields the bench
    and what the results record of the bundle and of the server's sources."""
    if shutil.which("wrk") is None:
        raise SystemExit(INSTALL_HINT)
    if profile and py_spy() is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    args.env, args.model_dir = parse_env(args.env), args.model_dir.resolve()
    args.real_root = args.real_root.resolve()
    if not (args.real_root / "app" / "__main__.py").is_file():
        raise SystemExit(f"--real-root {args.real_root} has no app/__main__.py")
    if not (args.model_dir / CURRENT).exists():
        log(f"no bundle at {args.model_dir / CURRENT}: training one (default configuration) ...")
        log(f"trained in {training_speed.train(args.data_dir, args.model_dir, []).wall_seconds:.1f} s")
    bundle = current_bundle_path(args.model_dir)
    metadata = json.loads((bundle / METADATA_FILE).read_text())
    digest = hashlib.sha256()
    for path in sorted((args.real_root / "app").rglob("*.py")):  # which server code was measured
        digest.update(str(path.relative_to(args.real_root)).encode() + path.read_bytes())
    document = {
        "sources": {"app_sha256": digest.hexdigest()[:16]},
        "bundle": {"path": bundle, "version": metadata["version"], "data": metadata.get("data")},
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        yield Bench(args, Path(folder)), document


def compare(bench: Bench, args: argparse.Namespace) -> dict[str, ServerResult]:
    """Each server under the same plan, `--repeat` rounds interleaved (the naive server once)."""
    plan = [(endpoint, level) for endpoint in args.endpoints for level in sorted(args.connections)]
    rounds: dict[str, list[ServerResult]] = {}
    for number in range(1, args.repeat + 1):
        for name in args.servers if number == 1 else [s for s in args.servers if s != "naive"]:
            log(f"=== round {number}/{args.repeat}: {name}")
            profile = name == "real" and args.profile and number == args.repeat
            env = args.env if name == "real" else {}
            rounds.setdefault(name, []).append(bench.measure(name, plan, env, number == 1, profile))
            time.sleep(1)  # let the port and the cores go quiet between servers
    return {name: median(results) for name, results in rounds.items()}


def main(argv: list[str] | None = None) -> int:
    found = arguments("load", __doc__, [8, 32, 128])
    found.add_argument("--servers", type=lambda t: t.split(","), default=list(report.SERVERS))
    found.add_argument("--endpoints", type=lambda t: t.split(","), default=list(ENDPOINTS))
    found.add_argument("--profile", action="store_true", help="py-spy the real server at 32 connections")
    args = found.parse_args(argv)
    if not set(args.servers) <= set(report.SERVERS) or not set(args.endpoints) <= set(ENDPOINTS):
        found.error(f"servers are among {report.SERVERS}, endpoints among {ENDPOINTS}")
    with session(args, args.profile) as (bench, document):
        servers = compare(bench, args)
    print(report.comparison(servers, document["bundle"], args.duration))
    document |= {"servers": {name: asdict(s) for name, s in servers.items()}, **report.summary(servers)}
    print(f"saved: {save('load', args, document, bench.stamp).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
