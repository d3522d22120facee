"""The one launcher of server processes, for the benchmarks and the tests.

`Server(model_dir, env)` starts `python -m app` (or another module taking `--host` and `--port`,
such as `benchmarks.references floor`) on loopback and returns once /readyz answers 200
(`ready_within=None`: at once, for a start that should fail). Its output goes to a log file, never
a pipe, which the server could fill and block on. `root` serves another checkout's `module`
(before/after comparisons), `prefix` goes before the command (`setpriv ...`), `port` restarts a
replica where a proxy expects it; `command` runs another server (nginx) in place of Python, ready
once `ready_path` answers 200. Leaving `with` stops it (SIGTERM, then SIGKILL after 15 s).

    with Server(model_dir, {"RELOAD_INTERVAL_S": "0"}) as server:
        server.fetch("/users/1/recommendations")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from app.bundle import METADATA_FILE, write_manifest
from app.bundle_store import current_bundle_path, point_current
from benchmarks import REPO

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Server(contextlib.AbstractContextManager):
    """One server process on loopback (see the module's docstring)."""

    def __init__(
        self,
        model_dir: Path,
        env: dict[str, str] | None = None,
        *,
        module: str = "app",
        args: Sequence[str] = (),
        root: Path = REPO,
        log_dir: Path | None = None,
        ready_within: float | None = 120.0,
        prefix: Sequence[str] = (),
        port: int | None = None,
        command: Sequence[str] = (),
        ready_path: str = "/readyz",
    ) -> None:
        self.port, self.ready_path = port or free_port(), ready_path
        self.url, self.ready_seconds = f"http://{HOST}:{self.port}", None
        name = "-".join([module.rpartition(".")[2], *args, str(self.port)])
        self.log_path = (log_dir or Path(tempfile.mkdtemp(prefix="server-"))) / f"{name}.log"
        environment = {**os.environ, "MODEL_DIR": str(model_dir), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        if root != REPO:  # its `module` first, this checkout's `benchmarks` after it
            environment["PYTHONPATH"] = os.pathsep.join([str(root), str(REPO)])
        own = [sys.executable, "-m", module, *args, "--host", HOST, "--port", str(self.port)]
        command = [*prefix, *(command or own)]
        with open(self.log_path, "wb") as log:  # the child has its own copy of the descriptor
            self.started = time.monotonic()
            streams = {"stdin": subprocess.DEVNULL, "stdout": log, "stderr": log}
            self.process = subprocess.Popen(command, cwd=root, env=environment, **streams)
        try:
            if ready_within is not None:
                self.wait_ready(ready_within)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def __exit__(self, *_: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float) -> float:
        """Seconds from process start to the first 200 from /readyz, or `ready_path` (RuntimeError
        with the log's tail if the server exits or the deadline passes)."""
        while time.monotonic() < self.started + timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log(20)}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as response:
                    if response.status == 200:
                        self.ready_seconds = time.monotonic() - self.started
                        return self.ready_seconds
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"server not ready within {timeout:.0f} s:\n{self.log(20)}")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, kill: bool = False) -> None:
        stop(self.process, signal.SIGKILL if kill else signal.SIGTERM)

    def log(self, last_lines: int | None = None) -> str:
        """What the server printed so far (only its last lines, with `last_lines`)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-last_lines:]) if last_lines else text

    def memory_mb(self) -> tuple[float, float]:
        """Peak (VmHWM) and current (VmRSS) resident memory of the process, in MB."""
        with open(f"/proc/{self.pid}/status") as status:
            found = dict(line.split(":", 1) for line in status if line.startswith(("VmHWM", "VmRSS")))
        peak, rss = (round(int(found.get(key, "0 kB").split()[0]) / 1024, 1) for key in ("VmHWM", "VmRSS"))
        return peak, rss

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid, missing_ok=False)

    def fetch(self, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """The decoded JSON answer to GET `path`, or to POST `path` with `body` as JSON."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    def metric(self, name: str) -> float:
        """A sample's value from /metrics (`name` with its labels, as printed), 0 if absent."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            lines = response.read().decode().splitlines()
        return next((float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + " ")), 0.0)


def stop(process: subprocess.Popen, how: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Sends `how` to a running process, then SIGKILL if it has not exited within `grace` seconds."""
    if process.poll() is None:
        process.send_signal(how)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def copy_bundle_as(bundle: Path, model_dir: Path, version: str) -> Path:
    """Copies a bundle folder to `model_dir/version` with `version` in its metadata: the same weights
    under a new version name, as training would publish them (`app.bundle_store.point_current`
    then switches `current` to it)."""
    shutil.copytree(bundle, model_dir / version)
    metadata = json.loads((model_dir / version / METADATA_FILE).read_text())
    (model_dir / version / METADATA_FILE).write_text(json.dumps({**metadata, "version": version}))
    write_manifest(model_dir / version)
    return model_dir / version


def copy_models(model_dir: Path, into: Path) -> Path:
    """A model folder of its own holding a copy of `model_dir`'s current bundle, as current: the one
    given is never written."""
    first = current_bundle_path(model_dir)
    copy_bundle_as(first, into, first.name)
    point_current(into, first.name)
    return into


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def process_cpu_seconds(pid: int, missing_ok: bool = True) -> float:
    """User plus system CPU time of a process (all its threads) so far (0 for one that has gone, if
    `missing_ok`: a server measured must not pass for idle once it has crashed)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        if missing_ok:
            return 0.0
        raise
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_seconds() -> float:
    """CPU time all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7) if i < len(fields)) / CLOCK_TICKS


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a database in a throwaway PostgreSQL cluster (`tests/support/postgres.py`)."""
    from tests.support.postgres import find_binaries, running_cluster

    if (binaries := find_binaries()) is None:
        raise SystemExit("PostgreSQL is not installed: `apt-get install -y postgresql` (Debian/Ubuntu)")
    with running_cluster(binaries) as cluster:
        yield cluster.new_database()
