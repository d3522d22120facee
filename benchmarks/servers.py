"""Starting, watching and stopping the servers under test, each as its own process on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BATCH_LINE = re.compile(
    r'^model_batch_size_(?P<part>sum|count)\{kind="(?P<kind>\w+)"\} (?P<value>\S+)$', re.M
)


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: `name` is real, floor or naive; `env` adds to the environment."""

    name: str
    model_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    gc_stats: bool = False  # real server only: run it through benchmarks.gcstats
    root: Path = REPO  # real server only: a checkout whose `app` package is served (before/after)

    def command(self, port: int, gc_file: Path | None = None) -> list[str]:
        if self.name == "real":
            runner = ["-m", "benchmarks.gcstats", str(gc_file)] if gc_file else ["-m", "app"]
            return [sys.executable, *runner, "--host", HOST, "--port", str(port)]
        return [
            sys.executable,
            "-m",
            "benchmarks.references",
            self.name,
            "--model-dir",
            str(self.model_dir),
            "--host",
            HOST,
            "--port",
            str(port),
        ]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, "MODEL_DIR": str(self.model_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
        if self.root != REPO:  # its `app` first, this repository's `benchmarks` after it
            env["PYTHONPATH"] = os.pathsep.join([str(self.root), str(REPO)])
        if self.name == "floor":
            # One BLAS thread: a 10k x 50 matrix-vector product only loses from more.
            env.update({name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        env.update(self.env)
        return env


class Server:
    """A running server process; its output goes to a log file, never to a pipe that could fill."""

    def __init__(self, spec: ServerSpec, log_dir: Path, ready_timeout: float = 120.0) -> None:
        self.spec = spec
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_dir / f"{spec.name}-{self.port}.log"
        self.gc_file = log_dir / f"{spec.name}-{self.port}-gc.json" if spec.gc_stats else None
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        started = time.monotonic()
        self.process = subprocess.Popen(
            spec.command(self.port, self.gc_file),
            cwd=spec.root,
            env=spec.environment(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self.ready_seconds = self._wait_ready(started, ready_timeout)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self, started: float, timeout: float) -> float:
        """Seconds from process start to the first 200 from /readyz."""
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.name} server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.spec.name} server not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as response:
            return json.load(response)

    def batch_counters(self) -> dict[str, tuple[float, float]]:
        """The real server's model_batch_size histogram: {kind: (sum, count)} (empty elsewhere)."""
        try:
            with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
        found: dict[str, list[float]] = {}
        for match in BATCH_LINE.finditer(text):
            found.setdefault(match["kind"], [0.0, 0.0])[match["part"] == "count"] = float(match["value"])
        return {kind: (values[0], values[1]) for kind, values in found.items()}

    def post_json(self, path: str, body: Any, timeout: float = 30.0) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    def settle(self, probe_path: str, timeout: float) -> bool:
        """True once a real request queued behind any backlog answers within `timeout` seconds."""
        try:
            self.get_json(probe_path, timeout=timeout)
            return True
        except (urllib.error.URLError, OSError):
            return False

    def memory_mb(self) -> dict[str, float]:
        """Peak (VmHWM) and current (VmRSS) resident memory of the server process, in MB."""
        found = {}
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    found[key] = round(int(value.split()[0]) / 1024, 1)
        return {"peak_rss_mb": found.get("VmHWM", 0.0), "rss_mb": found.get("VmRSS", 0.0)}

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the whole process (all its threads) so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def gc_pauses(self) -> list[tuple[float, int, float]]:
        """(wall start, generation, seconds) of each collection, once the process has exited."""
        if self.gc_file is None or not self.gc_file.exists():
            return []
        return [tuple(row) for row in json.loads(self.gc_file.read_text())["pauses"]]

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, kill: bool = False) -> None:
        """SIGTERM, a bounded wait, then SIGKILL (at once with `kill`); only this process, by its id."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def machine_cpu_seconds() -> float:
    """CPU time all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7) if i < len(fields)) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
