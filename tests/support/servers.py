"""Starting `python -m app` as a real process on a free loopback port, for the tests that need one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model_dir: Path, port: int, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "MODEL_DIR": str(model_dir), "RELOAD_INTERVAL_S": "0", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(server: subprocess.Popen, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited {server.returncode}: {server.stderr.read()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("server not ready in time")


@contextmanager
def live_server(model_dir: Path, **env: str) -> Iterator[tuple[subprocess.Popen, str]]:
    port = free_port()
    server = start_server(model_dir, port, **env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, url)
        yield server, url
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(10)
