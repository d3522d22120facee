"""A fleet on one machine: api replicas behind Debian's nginx, one PostgreSQL, driven by wrk.

    python -m benchmarks.fleet --model-dir /tmp/m [--replicas 3] [--duration 20] [--connections 32]

Throughput and p99 through the proxy with 1 replica and with all of them; then, under load and a
writer storing ratings, a new bundle published, one replica killed and restarted, another
stopped; exit status 1 if a check failed. What it measures and reports: benchmarks/README.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.bundle_store import current_bundle_path, point_current
from benchmarks import REPO, log, parser, save
from benchmarks.servers import (
    HOST,
    Server,
    copy_bundle_as,
    copy_models,
    free_port,
    machine_cpu_seconds,
    postgres_database,
    process_cpu_seconds,
    stop,
)
from benchmarks.wrk import WrkRun, known_ids, run_wrk, write_load_files

NGINX_CONF = REPO / "deploy" / "nginx" / "nginx.conf"
COMPOSE_SERVER = re.compile(r"^(?P<indent>[ \t]*)server api:8000 resolve (?P<params>[^;]*);$", re.M)
LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen 8080 ", re.M)
NGINX_HINT = "nginx is not installed: `apt-get install -y nginx` (Debian/Ubuntu, as root)"
WRITER_USERS = 10_000_000  # stored ratings go to user ids far above MovieLens's


def nginx_config(addresses: Sequence[str], folder: Path, port: int) -> str:
    """deploy/nginx/nginx.conf for replicas at `addresses` (host:port): its one `server api:8000
    resolve ...` line becomes a line per address with the same parameters but `resolve`, its logs
    go to `folder`, and it listens on loopback `port`."""
    text = NGINX_CONF.read_text()
    if (found := COMPOSE_SERVER.search(text)) is None:
        raise ValueError(f"{NGINX_CONF} has no `server api:8000 resolve ...;` line to write out")
    lines = "\n".join(f"{found['indent']}server {address} {found['params']};" for address in addresses)
    text = text[: found.start()] + lines + text[found.end() :]
    text = LISTEN.sub(lambda m: f"{m['indent']}listen {HOST}:{port} ", text, count=1)
    return text.replace("/var/log/nginx/", f"{folder}/")


def nginx_command(conf: Path, *extra: str) -> list[str]:
    """nginx on `conf`, its prefix, pid file and start-up log beside it (no system path written)."""
    if shutil.which("nginx") is None:
        raise RuntimeError(NGINX_HINT)
    folder = conf.parent
    options = ["-c", str(conf), "-p", str(folder), "-e", str(folder / "startup.log")]
    return ["nginx", *options, "-g", f"pid {folder / 'nginx.pid'};{' '.join(extra)}"]


class Nginx(Server):
    """Debian's nginx in the foreground on a free loopback port, in front of `addresses`."""

    def __init__(self, addresses: Sequence[str], folder: Path) -> None:
        self.folder, self.conf, port = folder, folder / "nginx.conf", free_port()
        self.conf.write_text(nginx_config(addresses, folder, port))
        command, ready = nginx_command(self.conf, "daemon off;"), "/nginx-health"
        options = dict(module="nginx", command=command, ready_path=ready, port=port, ready_within=10)
        super().__init__(folder, log_dir=folder, **options)

    def reconfigure(self, addresses: Sequence[str]) -> None:
        """New replica list; SIGHUP: new workers take it, old ones finish their requests."""
        self.conf.write_text(nginx_config(addresses, self.folder, self.port))
        self.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)

    def cpu_seconds(self) -> float:
        """CPU time of the master and its workers (the processes whose parent it is)."""
        pids = [self.process.pid]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.process.pid:
                    pids.append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        return sum(map(process_cpu_seconds, pids))

    def stop(self, kill: bool = False) -> None:
        stop(self.process, signal.SIGKILL if kill else signal.SIGQUIT)  # SIGQUIT: finish requests in flight


@dataclass
class Writer:
    """Stores one rating after another through the proxy (PUT, one keep-alive connection), each a
    new (user, movie) pair; keeps the acknowledged ones and counts the failed ones."""

    url: str
    movies: list[int]
    acknowledged: list[tuple[int, int, float]] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    sent: int = 0

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not stop.is_set():
                movie, rating = self.movies[self.sent % len(self.movies)], 0.5 + (self.sent % 10) / 2
                user, self.sent = WRITER_USERS + self.sent // len(self.movies), self.sent + 1
                try:
                    status = client.put(f"/users/{user}/ratings/{movie}", json={"rating": rating}).status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                if status == 200:
                    self.acknowledged.append((user, movie, rating))
                else:
                    self.failed[str(status)] += 1

    def missing(self) -> list[tuple[int, int, float]]:
        """The acknowledged writes that a read through the proxy does not show as written."""
        stored: dict[tuple[int, int], float] = {}
        for user in sorted({user for user, _, _ in self.acknowledged}):
            answer = httpx.get(f"{self.url}/users/{user}/ratings", params={"limit": 100}, timeout=30)
            stored |= {(user, item["movie_id"]): item["rating"] for item in answer.json()["ratings"]}
        return [w for w in self.acknowledged if stored.get(w[:2]) != w[2]]


@dataclass
class Phase:
    name: str
    replicas: int
    runs: list[WrkRun]
    seconds: float
    load_average: tuple[float, float, float]
    replica_cpu_percent: float  # the replicas together, % of one core
    proxy_cpu_percent: float
    other_cpu_percent: float  # everything else: wrk, PostgreSQL, the writer, other people's work
    events: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(run.errors for run in self.runs)

    def per_core(self, run: WrkRun) -> float:
        """Requests per second per core the replicas used (the capacity model's unit)."""
        cores = self.replica_cpu_percent / 100
        return round(run.requests_per_s / cores, 1) if cores else 0

    def rows(self) -> list[str]:
        """A line per run, in the columns of `COLUMNS`."""
        cpu = f"{self.replica_cpu_percent:>6.0f}{self.proxy_cpu_percent:>7.0f}{self.other_cpu_percent:>7.0f}"
        return [
            f"{self.name:<28}{r.endpoint:<16}{self.replicas:>3}{r.requests_per_s:>9.1f}{r.p99_text:>9}"
            f"{r.errors:>7}{cpu}{self.per_core(r):>10.0f}{self.load_average[0]:>6.2f}"
            for r in self.runs
        ]

    def document(self) -> dict[str, Any]:
        runs = [asdict(run) | {"per_core": self.per_core(run)} for run in self.runs]
        return asdict(self) | {"runs": runs, "failed": self.failed}


COLUMNS = f"{'phase':<28}endpoint        n    req/s   p99 ms failed  api% proxy% other%  per core load"


class Fleet:
    """The replicas, sharing a copy of the model folder and one database, and the proxy before them."""

    def __init__(self, args: Any, work: Path, database_url: str) -> None:
        self.args, self.work, self.models = args, work, copy_models(args.model_dir, work / "models")
        self.files, self.movies = write_load_files(self.models, work), known_ids(self.models)[1][:100]
        self.env = {"DATABASE_URL": database_url, "RELOAD_INTERVAL_S": str(args.reload_interval)}
        self.starts, self.cpu_at_stop = 0, {}
        started = [self.start(i, free_port()) for i in range(args.replicas)]  # loading side by side
        self.replicas = [self.ready(server) for server in started]
        self.proxy = Nginx(self.addresses(), work)

    def start(self, index: int, port: int) -> Server:
        self.starts += 1
        (folder := self.work / f"replica-{index}-start-{self.starts}").mkdir()
        env = {**self.env, "REPLICA_NAME": f"api-{index}"}
        return Server(self.models, env, log_dir=folder, ready_within=None, port=port)

    @staticmethod
    def ready(server: Server) -> Server:
        log(f"api on port {server.port} ready in {server.wait_ready(300):.1f} s")
        return server

    def addresses(self, count: int | None = None) -> list[str]:
        return [f"{HOST}:{server.port}" for server in self.replicas[:count]]

    def running(self) -> list[Server]:
        return [server for server in self.replicas if server.process.poll() is None]

    def phase(
        self, name: str, endpoints: Sequence[str], action: Callable | None = None, writer=None
    ) -> Phase:
        """wrk on each endpoint at once through the proxy for --duration seconds; `action` runs a
        third of the way in, `writer` stores ratings all along."""
        replicas_before = {s.pid: s.cpu_seconds() for s in self.running()}
        proxy_before, machine_before, started = (
            self.proxy.cpu_seconds(),
            machine_cpu_seconds(),
            time.monotonic(),
        )
        stop_writing, events = threading.Event(), {}
        with ThreadPoolExecutor(len(endpoints) + 1) as pool:
            wrk = (self.proxy.url, self.args.connections, self.args.duration)
            loads = [pool.submit(run_wrk, wrk[0], e, self.files[e], *wrk[1:]) for e in endpoints]
            writing = pool.submit(writer.run, stop_writing) if writer else None
            if action:
                time.sleep(self.args.duration / 3)
                events = action()
            runs = [load.result() for load in loads]
            stop_writing.set()
            if writing:
                writing.result()
        elapsed = time.monotonic() - started
        # Replicas stopped meanwhile count up to their stop; those started meanwhile from their start.
        pids = {*replicas_before, *(s.pid for s in self.running())}
        now = {pid: self.cpu_at_stop.get(pid, process_cpu_seconds(pid)) for pid in pids}
        replicas = sum(now[pid] - replicas_before.get(pid, 0) for pid in pids)
        proxy = self.proxy.cpu_seconds() - proxy_before
        others = max(machine_cpu_seconds() - machine_before - replicas - proxy, 0.0)
        cpu = (round(100 * seconds / elapsed, 1) for seconds in (replicas, proxy, others))
        result = Phase(name, len(self.running()), runs, round(elapsed, 1), os.getloadavg(), *cpu, events)
        for row in result.rows():
            log(row)
        if events:
            log(f"[{name}] {json.dumps(events)}")
        return result

    def publish(self) -> dict[str, Any]:
        """A new bundle version published as training would; seconds until each replica serves it."""
        version = f"{current_bundle_path(self.models).name}-fleet"
        copy_bundle_as(current_bundle_path(self.models), self.models, version)
        published, converged = time.monotonic(), {}
        point_current(self.models, version)
        deadline = published + self.args.reload_interval + 120
        while len(converged) < len(self.replicas) and time.monotonic() < deadline:
            for server in self.replicas:
                answer = server.fetch("/model")
                if answer["version"] == version and answer["replica"] not in converged:
                    converged[answer["replica"]] = round(time.monotonic() - published, 2)
            time.sleep(0.1)
        everyone = len(converged) == len(self.replicas)
        return {"version": version, "converged_s": converged, "all_converged": everyone}

    def kill_and_restart(self, index: int) -> dict[str, Any]:
        victim = self.replicas[index]
        self.cpu_at_stop[victim.pid] = victim.cpu_seconds()
        victim.stop(kill=True)
        killed = time.monotonic()
        self.replicas[index] = self.ready(self.start(index, victim.port))
        return {"killed": f"api-{index}", "back_in_s": round(time.monotonic() - killed, 2)}

    def terminate(self, index: int) -> dict[str, Any]:
        victim, started = self.replicas[index], time.monotonic()
        victim.process.send_signal(signal.SIGTERM)
        while victim.process.poll() is None and time.monotonic() < started + 30:
            self.cpu_at_stop[victim.pid] = victim.cpu_seconds()
            time.sleep(0.05)
        victim.stop()  # SIGKILL if it has not exited within 30 s
        exited = {"exit_code": victim.process.returncode, "exited_in_s": round(time.monotonic() - started, 2)}
        return {"stopped": f"api-{index}"} | exited

    def close(self) -> None:
        self.proxy.stop()
        for server in self.replicas:
            server.stop()


def run(args: Any, work: Path, database_url: str) -> dict[str, Any]:
    """The five phases, and the checks on them; prints a line per run as it ends."""
    fleet = Fleet(args, work, database_url)
    log(COLUMNS)
    try:
        rss = [server.memory_mb() for server in fleet.replicas]
        endpoints = ("recommendations", "predict")
        fleet.proxy.reconfigure(fleet.addresses(1))
        capacity = [fleet.phase(f"1 replica: {e}", [e]) for e in endpoints]
        fleet.proxy.reconfigure(fleet.addresses())
        capacity += [fleet.phase(f"{args.replicas} replicas: {e}", [e]) for e in endpoints]
        writer = Writer(fleet.proxy.url, fleet.movies)
        events = [
            fleet.phase("publish", ["recommendations"], fleet.publish, writer),
            fleet.phase("kill -9", ["recommendations"], lambda: fleet.kill_and_restart(1), writer),
            fleet.phase("SIGTERM", endpoints, lambda: fleet.terminate(2), writer),
        ]
        missing, rss_after = writer.missing(), [server.memory_mb() for server in fleet.running()]
    finally:
        fleet.close()
    checks = {
        "publish: every replica converged": events[0].events.get("all_converged", False),
        "publish: 0 failed requests": events[0].failed == 0,
        "kill -9: 0 failed GETs": events[1].failed == 0,
        "kill -9 and SIGTERM: every acknowledged write is there": not missing,
        "SIGTERM: 0 failed requests": events[2].failed == 0 and events[2].events.get("exit_code") == 0,
    }
    writes = {"sent": writer.sent, "acknowledged": len(writer.acknowledged), "failed": dict(writer.failed)}
    print("\n".join([COLUMNS, *(row for phase in capacity + events for row in phase.rows())]))
    print("\n".join(f"{phase.name}: {json.dumps(phase.events)}" for phase in events))
    print(f"writes: {json.dumps(writes)}, {len(missing)} missing; RSS (peak, now) MB: {rss} -> {rss_after}")
    print("\n".join(f"{'ok  ' if passed else 'FAIL'} {check}" for check, passed in checks.items()))
    return {
        "capacity": [phase.document() for phase in capacity],
        "events": [phase.document() for phase in events],
        "writes": writes | {"missing": missing[:20], "missing_count": len(missing)},
        "rss_mb": {"after_start": rss, "at_end": rss_after},
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    arguments = parser("fleet", __doc__)
    arguments.add_argument(
        "--model-dir", type=Path, default=Path("models"), help="whose current bundle is served"
    )
    arguments.add_argument("--replicas", type=int, default=3)
    arguments.add_argument(
        "--duration", type=float, default=20.0, help="seconds of each wrk run (default 20)"
    )
    arguments.add_argument("--connections", type=int, default=32)
    arguments.add_argument("--reload-interval", type=float, default=5.0, help="RELOAD_INTERVAL_S (default 5)")
    args = arguments.parse_args(argv)
    if args.replicas < 3:
        arguments.error("--replicas: at least 3 (one is killed, another stopped)")
    with postgres_database() as database_url, tempfile.TemporaryDirectory(prefix="fleet-") as scratch:
        document = run(args, Path(scratch), database_url)
    print(f"saved: {save('fleet', args, document)}")
    return 0 if all(document["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
