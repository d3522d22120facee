"""The health checks of the Dockerfile and docker-compose.yml, run against a local HTTP server."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.support.deployment import compose_healthcheck, dockerfile_healthcheck


@pytest.fixture
def ready_server() -> Iterator[dict]:
    """Serves /healthz with 200 and /readyz with the status in state["readyz"]."""
    state = {"readyz": 200, "paths": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["paths"].append(self.path)
            status = {"/readyz": state["readyz"], "/healthz": 200}.get(self.path, 404)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["port"] = server.server_address[1]
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def run_probe(command: list[str], port: int) -> int:
    assert command[:2] == ["python", "-c"], (
        f"the health check must be a plain `python -c` (no curl/wget in the image): {command}"
    )
    env = {**os.environ, "PORT": str(port), "http_proxy": "http://127.0.0.1:9", "no_proxy": ""}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return result.returncode


@pytest.mark.parametrize("source", ["Dockerfile", "docker-compose.yml"])
def test_healthcheck_probes_readyz(source: str, ready_server: dict) -> None:
    command = dockerfile_healthcheck() if source == "Dockerfile" else compose_healthcheck()
    port = ready_server["port"]
    assert run_probe(command, port) == 0, "healthy: /readyz answered 200"
    assert ready_server["paths"][-1] == "/readyz", ready_server["paths"]
    ready_server["readyz"] = 503
    assert run_probe(command, port) != 0, "must be unhealthy while /readyz answers 503"
    ready_server["readyz"] = 404
    assert run_probe(command, port) != 0, "must not pass when /readyz is missing"
