"""The load benchmark: the real server beside the floor and naive references, under the same load.

    python -m benchmarks.load --data-dir DIR --model-dir DIR [--duration 10] [--repeat 3]

What it measures and reports: benchmarks/README.md. `benchmarks.sweep` reuses its pieces.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.bundle import ENCODERS_FILE, METADATA_FILE
from app.bundle_store import CURRENT, current_bundle_path
from benchmarks import RESULTS, report, save, stamp, training_speed
from benchmarks.servers import REPO, Server, children_cpu_seconds, machine_cpu_seconds
from benchmarks.wrk import ENDPOINTS, ERROR_FIELDS, INSTALL_HINT, WrkRun, run_wrk, write_load_files

OTHERS_LIMIT_PERCENT = 15.0  # CPU (% of a core) of other processes above which a run is not clean
RETRY_PAUSE_S = 20.0
SETTLE_S = 15.0  # a server whose backlog does not drain within this after a run is restarted
WARMUP_S = 2.0
NAIVE_MAX_S = 10.0  # the naive server's runs last min(--duration, this)
log = functools.partial(print, file=sys.stderr, flush=True)
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
        return {(run.endpoint, run.connections): run for run in self.runs}.get((endpoint, connections))

    def note(self, text: str) -> None:
        log(f"[{self.name}] {text}")
        self.notes.append(text)


class Bench:
    """Measures one server at a time against the same load files, under the same rules."""

    def __init__(self, args: argparse.Namespace, folder: Path, bundle: Path, stamp: str) -> None:
        self.args, self.folder, self.stamp = args, folder, stamp
        self.files = write_load_files(bundle, folder)
        users = json.loads((bundle / ENCODERS_FILE).read_text())["users"]
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
        optionally profiles, stops it."""
        duration = min(self.args.duration, NAIVE_MAX_S) if name == "naive" else self.args.duration
        speed, server = cpu_speed(), self.start(name, env)
        result = ServerResult(name, env, round(server.ready_seconds or 0.0, 3), cpu_speed=[speed])
        try:
            if answers:
                self.answers(server, result)
            for i, (endpoint, connections) in enumerate(plan):
                if name != "naive" and endpoint not in [e for e, _ in plan[:i]]:
                    self.run(server, endpoint, min(connections, 8), WARMUP_S)
                result.runs.append(self.retried(server, result, endpoint, connections, duration))
                if not self.settle(server):  # a backlog that would leak into the next run
                    late = f"backlog not drained in {SETTLE_S:.0f} s"
                    result.note(f"restarted after {endpoint} c={connections}: {late}")
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

    def retried(
        self, server: Server, result: ServerResult, endpoint: str, connections: int, duration: float
    ) -> WrkRun:
        """A run, again after a pause (up to --retries times) while other processes were busy."""
        for attempt in range(1, self.args.retries + 2):
            run = self.run(server, endpoint, connections, duration, attempt)
            log(f"[{result.name}] {report.run_line(run)}")
            if run.other_cpu_percent <= OTHERS_LIMIT_PERCENT:
                return run
            if attempt <= self.args.retries:
                log(f"[{result.name}] other processes were busy: again in {RETRY_PAUSE_S:.0f} s")
                self.settle(server)
                time.sleep(RETRY_PAUSE_S)
        busy = f"other processes used {run.other_cpu_percent:.0f}% of a core in {attempt} run(s)"
        result.note(f"{endpoint} c={connections}: {busy}: its figures are not clean")
        return run

    def run(self, server: Server, endpoint: str, connections: int, duration: float, attempt=0) -> WrkRun:
        """One wrk run, with the CPU the server and other processes used and the mean batch size."""
        kind = "recommend" if endpoint == "recommendations" else "predict"
        batches, started = batch_counters(server, kind), time.monotonic()
        server_before, wrk_before = server.cpu_seconds(), children_cpu_seconds()
        machine_before = machine_cpu_seconds()
        try:
            wrk = run_wrk(server.url, endpoint, self.files[endpoint], connections, duration)
        except RuntimeError as error:
            state = "running" if server.process.poll() is None else f"exited ({server.process.returncode})"
            raise RuntimeError(f"{error}; the server is {state}") from error
        elapsed = time.monotonic() - started
        busy, wrk_busy = server.cpu_seconds() - server_before, children_cpu_seconds() - wrk_before
        others = max(0.0, 100 * (machine_cpu_seconds() - machine_before - busy - wrk_busy) / elapsed)
        after = batch_counters(server, kind)
        calls = after[1] - batches[1] if after and batches else 0
        mean_batch = round((after[0] - batches[0]) / calls, 2) if calls else None
        cpu = {"server_cpu_percent": round(100 * busy / elapsed, 1), "other_cpu_percent": round(others, 1)}
        return replace(wrk, **cpu, mean_batch_size=mean_batch, attempts=attempt)

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


def batch_counters(server: Server, kind: str) -> tuple[float, float] | None:
    """(sum, count) of the real server's model_batch_size histogram for `kind`; None elsewhere."""
    try:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    found = dict(re.findall(rf'^model_batch_size_(sum|count){{kind="{kind}"}} (\S+)$', text, re.M))
    return (float(found["sum"]), float(found["count"])) if len(found) == 2 else None


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


def add_arguments(parser: argparse.ArgumentParser, connections: list[int]) -> None:
    """The options load and sweep share."""
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("MOVIELENS_DIR"), help="to train")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", type=lambda t: [int(c) for c in t.split(",")], default=connections)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds, median figures")
    parser.add_argument("--retries", type=int, default=2, help="of runs disturbed by other processes")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="real server setting")
    parser.add_argument("--real-root", type=Path, default=REPO, help="a checkout whose `app` is served")


def parse_env(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs, keys upper-cased as the server's settings read them."""
    if bad := [pair for pair in pairs if "=" not in pair or pair.startswith("=")]:
        raise SystemExit(f"a setting is KEY=VALUE, got {bad[0]!r}")
    return {key.strip().upper(): value.strip() for key, _, value in (pair.partition("=") for pair in pairs)}


@contextmanager
def session(args: argparse.Namespace, kind: str, profile=False) -> Iterator[tuple[Bench, dict[str, Any]]]:
    """Checks the tools, trains a bundle if there is none, writes the load files; yields the bench
    and the results document's start (what is measured, on what, with which sources)."""
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
        log(f"trained in {training_speed.train(args.data_dir, args.model_dir).wall_seconds:.1f} s")
    bundle = current_bundle_path(args.model_dir)
    metadata = json.loads((bundle / METADATA_FILE).read_text())
    digest = hashlib.sha256()
    for path in sorted((args.real_root / "app").rglob("*.py")):  # which server code was measured
        digest.update(str(path.relative_to(args.real_root)).encode() + path.read_bytes())
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    document = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([f"python -m benchmarks.{kind}", *sys.argv[1:]]),
        "settings": vars(args),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "sources": {"head": head.stdout.strip(), "app_sha256": digest.hexdigest()[:16]},
        "bundle": {"path": bundle, "version": metadata["version"], "data": metadata.get("data")},
    }
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        yield Bench(args, Path(folder), bundle, stamp()), document


def compare(bench: Bench, args: argparse.Namespace) -> dict[str, ServerResult]:
    """Each server under the same plan, `--repeat` rounds interleaved (the naive server once)."""
    plan = [(endpoint, level) for endpoint in args.endpoints for level in sorted(args.connections)]
    rounds: dict[str, list[ServerResult]] = {}
    for number in range(1, args.repeat + 1):
        for name in args.servers if number == 1 else [s for s in args.servers if s != "naive"]:
            log(f"=== round {number}/{args.repeat}: {name}")
            last = number == args.repeat
            env, profile = (args.env, args.profile and last) if name == "real" else ({}, False)
            rounds.setdefault(name, []).append(bench.measure(name, plan, env, number == 1, profile))
            time.sleep(1)  # let the port and the cores go quiet between servers
    return {name: median(results) for name, results in rounds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    add_arguments(parser, [8, 32, 128])
    parser.add_argument("--servers", type=lambda t: t.split(","), default=list(report.SERVERS))
    parser.add_argument("--endpoints", type=lambda t: t.split(","), default=list(ENDPOINTS))
    parser.add_argument("--profile", action="store_true", help="py-spy the real server at 32 connections")
    args = parser.parse_args(argv)
    if not set(args.servers) <= set(report.SERVERS) or not set(args.endpoints) <= set(ENDPOINTS):
        parser.error(f"servers are among {report.SERVERS}, endpoints among {ENDPOINTS}")
    with session(args, "load", args.profile) as (bench, document):
        servers = compare(bench, args)
    print(report.comparison(servers, document["bundle"], args.duration))
    document |= {"servers": {name: asdict(s) for name, s in servers.items()}, **report.summary(servers)}
    path = save("load", document, bench.stamp)
    report.plot(servers, path.with_suffix(".png"), f"{document['bundle']['version']}, {os.cpu_count()} cores")
    print(f"saved: {path.relative_to(REPO)}" + (" and its .png" if path.with_suffix(".png").exists() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
