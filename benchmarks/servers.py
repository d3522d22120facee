"""The one launcher of server processes, for the benchmarks and the tests.

`Server` starts `python -m app` (or another module taking `--host` and `--port`, such as
`benchmarks.references floor`) on a free loopback port, with `MODEL_DIR` and environment overrides,
its output in a log file: never a pipe, which the server could fill and block on.

    with Server(model_dir, {"RELOAD_INTERVAL_S": "0"}) as server:  # back once /readyz answers 200
        httpx.get(f"{server.url}/users/1/recommendations")
    server = Server(model_dir, ready_within=None)  # a start that should fail: do not wait
    assert server.wait(120) == 2 and "python -m training" in server.log()

`Server(model_dir, env=None, *, module="app", args=(), root=REPO, log_dir=None, ready_within=120,
prefix=(), port=None)` returns once the server is ready (`ready_within` seconds at most; None: at
once), on `port` if given (a replica restarted where a proxy expects it), else a free one. `root` is
the checkout whose `module` runs (before/after comparisons); the log goes to `log_dir` (default: a
new temporary folder) and stays; `prefix` goes before the command (`setpriv ...`, say). Then `url`,
`port`, `pid`, `process` (the Popen), `ready_seconds` (process start to the first 200 from /readyz),
`wait_ready(timeout)` (RuntimeError with the log's tail if the server exits or the deadline passes),
`wait(timeout)` (exit code), `stop(kill=False)` (SIGTERM, 15 s, then SIGKILL, to this process only;
also on leaving `with`), `log(last_lines=None)`, `memory_mb()` (peak and current RSS),
`cpu_seconds()`, `fetch(path, body=None)` (the JSON answer to a GET, or to a POST of `body`).
Beside it: `free_port()`, and `copy_bundle_as(bundle, model_dir, version)`, which copies a bundle
under a new version name (its manifest written again), as training would publish it, for live
swaps (`current` left alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.bundle import METADATA_FILE, write_manifest

REPO = Path(__file__).resolve().parents[1]
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
    ) -> None:
        self.port = port or free_port()
        self.url, self.ready_seconds = f"http://{HOST}:{self.port}", None
        name = "-".join([module.rpartition(".")[2], *args, str(self.port)])
        self.log_path = (log_dir or Path(tempfile.mkdtemp(prefix="server-"))) / f"{name}.log"
        environment = {**os.environ, "MODEL_DIR": str(model_dir), "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        if root != REPO:  # its `module` first, this checkout's `benchmarks` after it
            environment["PYTHONPATH"] = os.pathsep.join([str(root), str(REPO)])
        command = [*prefix, sys.executable, "-m", module, *args, "--host", HOST, "--port", str(self.port)]
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
        """Seconds from process start to the first 200 from /readyz."""
        while time.monotonic() < self.started + timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log(20)}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        self.ready_seconds = time.monotonic() - self.started
                        return self.ready_seconds
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"server not ready within {timeout:.0f} s:\n{self.log(20)}")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

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
        """User plus system CPU time of the whole process (all its threads) so far."""
        return process_cpu_seconds(self.pid, missing_ok=False)

    def fetch(self, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """The decoded JSON answer to GET `path`, or to POST `path` with `body` as JSON."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)


def copy_bundle_as(bundle: Path, model_dir: Path, version: str) -> Path:
    """Copies a bundle folder to `model_dir/version` with `version` in its metadata: the same weights
    under a new version name, as training would publish them (`app.bundle_store.point_current`
    then switches `current` to it)."""
    shutil.copytree(bundle, model_dir / version)
    metadata = json.loads((model_dir / version / METADATA_FILE).read_text())
    (model_dir / version / METADATA_FILE).write_text(json.dumps({**metadata, "version": version}))
    write_manifest(model_dir / version)
    return model_dir / version


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def process_cpu_seconds(pid: int, missing_ok: bool = True) -> float:
    """User plus system CPU time of a process so far (0 for one that has gone, if `missing_ok`)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except FileNotFoundError:
        if missing_ok:
            return 0.0
        raise
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """User plus system CPU time of this process's children that have been waited for."""
    return sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])


def machine_cpu_seconds() -> float:
    """CPU time all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7) if i < len(fields)) / CLOCK_TICKS
