"""A fleet on one machine: api replicas behind Debian's nginx, one PostgreSQL, driven by wrk.

    python -m benchmarks.fleet --model-dir /tmp/m [--replicas 3] [--duration 20] [--connections 32]

The replicas are `python -m app` processes sharing one model folder and one PostgreSQL database,
nothing else; nginx runs `deploy/nginx/nginx.conf`, the file docker-compose.yml mounts, with its
`server api:8000 resolve ...` line written out as one line per local replica. It measures
throughput and p99 through the proxy with 1 replica and with all of them, then, under load
(recommendations from wrk, and a writer storing ratings through the proxy), it publishes a new
bundle (every replica must converge to it), kills one replica with SIGKILL and restarts it, and
stops one with SIGTERM, counting failed requests and checking that every acknowledged write can
be read back. Exit status 1 if a check failed. Details: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.bundle import ENCODERS_FILE
from app.bundle_store import current_bundle_path, point_current
from benchmarks import save
from benchmarks.servers import (
    HOST,
    REPO,
    Server,
    copy_bundle_as,
    free_port,
    machine_cpu_seconds,
    process_cpu_seconds,
)
from benchmarks.wrk import ERROR_FIELDS, WrkRun, run_wrk, write_load_files

NGINX_CONF = REPO / "deploy" / "nginx" / "nginx.conf"
COMPOSE_SERVER = re.compile(r"^(?P<indent>[ \t]*)server api:8000 resolve (?P<params>[^;]*);$", re.M)
LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen 8080 ", re.M)
NGINX_HINT = "nginx is not installed: `apt-get install -y nginx` (Debian/Ubuntu, as root)"
WRITER_USERS = 10_000_000  # stored ratings go to user ids far above MovieLens's
log = functools.partial(print, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# The proxy


def nginx_config(addresses: Sequence[str], folder: Path, port: int) -> str:
    """deploy/nginx/nginx.conf for replicas at `addresses` (host:port): its one `server api:8000
    resolve ...` line becomes a line per address with the same parameters but `resolve`, its logs
    go to `folder`, and it listens on loopback `port`."""
    text = NGINX_CONF.read_text()
    found = COMPOSE_SERVER.search(text)
    if found is None:
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


class Nginx:
    """Debian's nginx in the foreground on a free loopback port, in front of `addresses`."""

    def __init__(self, addresses: Sequence[str], folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.conf = folder / "nginx.conf"
        self.conf.write_text(nginx_config(addresses, folder, self.port))
        with open(folder / "nginx.out", "wb") as out:
            command = nginx_command(self.conf, "daemon off;")
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {(folder / 'startup.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/nginx-health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def reconfigure(self, addresses: Sequence[str]) -> None:
        """New replica list; SIGHUP: new workers take it, old ones finish their requests."""
        self.conf.write_text(nginx_config(addresses, self.folder, self.port))
        self.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)

    def cpu_seconds(self) -> float:
        """CPU time of the master and its workers."""
        return sum(process_cpu_seconds(pid) for pid in [self.process.pid, *children(self.process.pid)])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish requests in flight
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


# --------------------------------------------------------------------------------------------
# Writes through the proxy, remembered until they are read back


@dataclass
class Writer:
    """Stores one rating after another through the proxy (PUT, one keep-alive connection), each a
    new (user, movie) pair; keeps the acknowledged ones and counts the failed ones."""

    url: str
    movies: list[int]
    acknowledged: list[tuple[int, int, float]] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    sent: int = 0

    def run(self, stop: threading.Event) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        while not stop.is_set():
            user = WRITER_USERS + self.sent // len(self.movies)
            movie = self.movies[self.sent % len(self.movies)]
            rating = 0.5 + (self.sent % 10) / 2
            self.sent += 1
            try:
                body = json.dumps({"rating": rating})
                headers = {"content-type": "application/json"}
                connection.request("PUT", f"/users/{user}/ratings/{movie}", body, headers)
                response = connection.getresponse()
                response.read()
                if response.status == 200:
                    self.acknowledged.append((user, movie, rating))
                else:
                    self.failed[str(response.status)] = self.failed.get(str(response.status), 0) + 1
            except (OSError, http.client.HTTPException) as error:
                self.failed[type(error).__name__] = self.failed.get(type(error).__name__, 0) + 1
                connection.close()

    def missing(self) -> list[tuple[int, int, float]]:
        """The acknowledged writes that a read through the proxy does not show as written."""
        stored: dict[tuple[int, int], float] = {}
        for user in sorted({user for user, _, _ in self.acknowledged}):
            with urllib.request.urlopen(f"{self.url}/users/{user}/ratings?limit=100", timeout=30) as answer:
                for item in json.load(answer)["ratings"]:
                    stored[(user, item["movie_id"])] = item["rating"]
        return [w for w in self.acknowledged if stored.get(w[:2]) != w[2]]


# --------------------------------------------------------------------------------------------
# The fleet


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
        return (
            round(run.requests_per_s / (self.replica_cpu_percent / 100), 1) if self.replica_cpu_percent else 0
        )


class Fleet:
    def __init__(self, args: argparse.Namespace, work: Path, database_url: str) -> None:
        self.args, self.work = args, work
        self.models = work / "models"
        first = current_bundle_path(args.model_dir).name
        copy_bundle_as(current_bundle_path(args.model_dir), self.models, first)
        point_current(self.models, first)
        self.files = write_load_files(current_bundle_path(self.models), work)
        movies = json.loads((current_bundle_path(self.models) / ENCODERS_FILE).read_text())["movies"]
        self.movies = movies[:100]
        self.env = {"DATABASE_URL": database_url, "RELOAD_INTERVAL_S": str(args.reload_interval)}
        self.starts, self.cpu_at_stop = 0, {}
        ports = [free_port() for _ in range(args.replicas)]
        started = [self.start(i, port, ready_within=None) for i, port in enumerate(ports)]
        self.replicas = [self.ready(server) for server in started]
        self.proxy = Nginx(self.addresses(), work)

    def start(self, index: int, port: int, ready_within: float | None = 180.0) -> Server:
        self.starts += 1
        folder = self.work / f"replica-{index}-start-{self.starts}"
        folder.mkdir()
        env = {**self.env, "REPLICA_NAME": f"api-{index}"}
        return Server(self.models, env, log_dir=folder, ready_within=ready_within, port=port)

    @staticmethod
    def ready(server: Server) -> Server:
        server.wait_ready(300)
        log(f"api on port {server.port} ready in {server.ready_seconds:.1f} s")
        return server

    def addresses(self, count: int | None = None) -> list[str]:
        return [f"{HOST}:{server.port}" for server in self.replicas[:count]]

    def phase(
        self,
        name: str,
        endpoints: Sequence[str],
        action: Callable[[], dict[str, Any]] | None = None,
        writer: Writer | None = None,
    ) -> Phase:
        """wrk on each endpoint at once through the proxy for --duration seconds; `action` runs a
        third of the way in, `writer` stores ratings all along."""
        duration, connections = self.args.duration, self.args.connections
        replica_before = {s.pid: s.cpu_seconds() for s in self.replicas if s.process.poll() is None}
        proxy_before, machine_before, started = (
            self.proxy.cpu_seconds(),
            machine_cpu_seconds(),
            time.monotonic(),
        )
        stop = threading.Event()
        with ThreadPoolExecutor(len(endpoints) + 1) as pool:
            loads = [
                pool.submit(run_wrk, self.proxy.url, e, self.files[e], connections, duration)
                for e in endpoints
            ]
            writing = pool.submit(writer.run, stop) if writer else None
            events: dict[str, Any] = {}
            if action:
                time.sleep(duration / 3)
                events = action()
            runs = [load.result() for load in loads]
            stop.set()
            if writing:
                writing.result()
        elapsed = time.monotonic() - started
        # Replicas stopped meanwhile count up to their stop; those started meanwhile from their start.
        pids = {*replica_before, *(s.pid for s in self.replicas if s.process.poll() is None)}
        replica_cpu = sum(
            self.cpu_at_stop.get(p, process_cpu_seconds(p)) - replica_before.get(p, 0) for p in pids
        )
        proxy_cpu = self.proxy.cpu_seconds() - proxy_before
        others = machine_cpu_seconds() - machine_before - replica_cpu - proxy_cpu
        result = Phase(
            name,
            sum(1 for s in self.replicas if s.process.poll() is None),
            runs,
            round(elapsed, 1),
            os.getloadavg(),
            round(100 * replica_cpu / elapsed, 1),
            round(100 * proxy_cpu / elapsed, 1),
            round(100 * max(others, 0.0) / elapsed, 1),
            events,
        )
        for run in runs:
            log(
                f"[{name}] {run.endpoint:15s} {run.requests_per_s:8.1f} req/s  p99 {run.p99_text:>7} ms  "
                f"errors {run.errors}  replicas {result.replica_cpu_percent:.0f}% cpu  "
                f"proxy {result.proxy_cpu_percent:.0f}%  others {result.other_cpu_percent:.0f}%"
            )
        if events:
            log(f"[{name}] {json.dumps(events)}")
        return result

    # The three events under load ------------------------------------------------------------

    def publish(self) -> dict[str, Any]:
        """A new bundle version published as training would; seconds until each replica serves it."""
        version = f"{current_bundle_path(self.models).name}-fleet"
        copy_bundle_as(current_bundle_path(self.models), self.models, version)
        published = time.monotonic()
        point_current(self.models, version)
        converged: dict[str, float] = {}
        deadline = published + self.args.reload_interval + 120
        while len(converged) < len(self.replicas) and time.monotonic() < deadline:
            for server in self.replicas:
                answer = server.fetch("/model")
                if answer["version"] == version and answer["replica"] not in converged:
                    converged[answer["replica"]] = round(time.monotonic() - published, 2)
            time.sleep(0.1)
        return {
            "version": version,
            "converged_s": converged,
            "all_converged": len(converged) == len(self.replicas),
        }

    def kill_and_restart(self, index: int) -> dict[str, Any]:
        victim = self.replicas[index]
        self.cpu_at_stop[victim.pid] = victim.cpu_seconds()
        victim.stop(kill=True)
        killed = time.monotonic()
        self.replicas[index] = self.ready(self.start(index, victim.port, ready_within=None))
        return {"killed": f"api-{index}", "back_in_s": round(time.monotonic() - killed, 2)}

    def terminate(self, index: int) -> dict[str, Any]:
        victim, started = self.replicas[index], time.monotonic()
        victim.process.send_signal(signal.SIGTERM)
        while victim.process.poll() is None and time.monotonic() < started + 30:
            self.cpu_at_stop[victim.pid] = victim.cpu_seconds()
            time.sleep(0.05)
        victim.stop()  # SIGKILL if it has not exited within 30 s
        return {
            "stopped": f"api-{index}",
            "exit_code": victim.process.returncode,
            "exited_in_s": round(time.monotonic() - started, 2),
        }

    def close(self) -> None:
        self.proxy.stop()
        for server in self.replicas:
            server.stop()


def run(args: argparse.Namespace, work: Path, database_url: str) -> dict[str, Any]:
    fleet = Fleet(args, work, database_url)
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
            fleet.phase("SIGTERM", ["recommendations", "predict"], lambda: fleet.terminate(2), writer),
        ]
        missing = writer.missing()
        rss_after = [server.memory_mb() for server in fleet.replicas if server.process.poll() is None]
    finally:
        fleet.close()
    checks = {
        "publish: every replica converged": events[0].events.get("all_converged", False),
        "publish: 0 failed requests": events[0].failed == 0,
        "kill -9: 0 failed GETs": events[1].failed == 0,
        "kill -9 and SIGTERM: every acknowledged write is there": not missing,
        "SIGTERM: 0 failed requests": events[2].failed == 0 and events[2].events.get("exit_code") == 0,
    }
    writes = {"sent": writer.sent, "acknowledged": len(writer.acknowledged), "failed": writer.failed}
    return {
        "capacity": [phase_document(p) for p in capacity],
        "events": [phase_document(p) for p in events],
        "writes": writes | {"missing": missing[:20], "missing_count": len(missing)},
        "rss_mb": {"after_start": rss, "at_end": rss_after},
        "checks": checks,
    }


def phase_document(phase: Phase) -> dict[str, Any]:
    runs = [asdict(run) | {"per_core": phase.per_core(run)} for run in phase.runs]
    return asdict(phase) | {"runs": runs, "failed": phase.failed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m benchmarks.fleet", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model-dir", type=Path, default=Path("models"), help="whose current bundle is served"
    )
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each wrk run (default 20)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--reload-interval", type=float, default=5.0, help="RELOAD_INTERVAL_S (default 5)")
    args = parser.parse_args(argv)
    if args.replicas < 3:
        parser.error("--replicas: at least 3 (one is killed, another stopped)")
    from tests.support.postgres import PostgresCluster, find_binaries

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL is not installed: `apt-get install -y postgresql` (Debian/Ubuntu)")
    cluster = PostgresCluster(binaries)
    with tempfile.TemporaryDirectory(prefix="fleet-") as scratch:
        try:
            cluster.init()
            cluster.start()
            document = run(args, Path(scratch), cluster.new_database())
        finally:
            cluster.destroy()
    document = {
        "command": " ".join(["python -m benchmarks.fleet", *(argv or sys.argv[1:])]),
        "settings": vars(args),
    } | document
    print_report(document)
    print(f"saved: {save('fleet', document)}")
    return 0 if all(document["checks"].values()) else 1


COLUMNS = ("phase", "endpoint", "replicas", "req/s", "p99 ms", "failed", "api CPU %", "req/s per api core")
COLUMNS += ("proxy CPU %", "load average")


def print_report(document: dict[str, Any]) -> None:
    print("\n| " + " | ".join(COLUMNS) + " |\n|" + " --- |" * len(COLUMNS))
    for phase in document["capacity"] + document["events"]:
        for run in phase["runs"]:
            cells = [phase["name"], run["endpoint"], phase["replicas"], f"{run['requests_per_s']:,.0f}"]
            failed = sum(run[name] for name in ERROR_FIELDS)
            cells += [f"{run['p99_ms']:.1f}", failed, f"{phase['replica_cpu_percent']:.0f}"]
            cells += [f"{run['per_core']:,.0f}", f"{phase['proxy_cpu_percent']:.0f}"]
            cells += [" ".join(f"{v:.2f}" for v in phase["load_average"])]
            print("| " + " | ".join(map(str, cells)) + " |")
    for phase in document["events"]:
        print(f"{phase['name']}: {json.dumps(phase['events'])}")
    print(f"writes: {json.dumps(document['writes'])}")
    print(f"RSS (peak, current) MB per replica: {document['rss_mb']}")
    for check, passed in document["checks"].items():
        print(f"{'ok  ' if passed else 'FAIL'} {check}")


if __name__ == "__main__":
    sys.exit(main())
