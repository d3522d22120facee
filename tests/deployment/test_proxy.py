"""The reverse proxy (deploy/nginx/nginx.conf): checked by Debian's nginx, and run for real.

The file is the one docker-compose.yml mounts into the official image; `benchmarks.fleet` writes
it out for local replicas (`nginx_config`), and so do these tests. Debian's nginx (1.22) predates
`resolve` in an upstream (1.27.3), the one thing the local form drops; that the compose form keeps
it, with the resolver and the pinned image it needs, is checked on the text.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.settings import Settings
from benchmarks.fleet import NGINX_CONF, NGINX_HINT, Nginx, nginx_command, nginx_config
from tests.support.deployment import load_compose, mount_at

# The hardening work's limits that the proxy mirrors (the README's Settings, app/settings.py).
HEADER_TIMEOUT_S, BODY_TIMEOUT_S, IDLE_KEEP_ALIVE_S = 10, 30, 5
HEADER_BYTES = 16 * 1024


def nginx_binary() -> str:
    binary = shutil.which("nginx")
    if binary is None:
        pytest.fail(NGINX_HINT, pytrace=False)
    return binary


def directives(text: str) -> dict[str, list[str]]:
    """The simple directives of the text outside the upstream block, name -> their arguments as
    written (the last one wins)."""
    text = re.sub(r"upstream api \{.*?\}", "", text, flags=re.S)
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, *args = line[:-1].split()
            found[name] = args
    return found


def seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[unit]


def size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmM])?", value).groups()
    return int(number) * {"k": 1024, "m": 1024 * 1024, None: 1}[unit and unit.lower()]


def test_debian_nginx_accepts_the_config_as_the_fleet_writes_it(tmp_path: Path) -> None:
    nginx_binary()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"], tmp_path, 8080))
    checked = subprocess.run([*nginx_command(conf), "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0 and "test is successful" in checked.stderr, checked.stderr


def test_the_local_form_differs_from_the_compose_form_only_in_the_replica_list(tmp_path: Path) -> None:
    original = NGINX_CONF.read_text()
    server = re.search(r"^( *)server api:8000 resolve (.*);$", original, re.M)
    assert server, "the compose form balances over the name `api`, re-resolved"
    indent, params = server.groups()
    written = nginx_config(["127.0.0.1:8001", "127.0.0.1:8002"], tmp_path, 9000)
    local = f"{indent}server 127.0.0.1:8001 {params};\n{indent}server 127.0.0.1:8002 {params};"
    assert local in written
    undone = written.replace(local, server.group(0)).replace(f"{tmp_path}/", "/var/log/nginx/")
    assert undone.replace("listen 127.0.0.1:9000 ", "listen 8080 ") == original


def test_the_proxy_enforces_the_app_limits() -> None:
    settings, found = Settings(), directives(NGINX_CONF.read_text())
    assert size(found["client_max_body_size"][0]) == settings.max_body_bytes
    assert seconds(found["client_header_timeout"][0]) == HEADER_TIMEOUT_S
    assert seconds(found["client_body_timeout"][0]) == BODY_TIMEOUT_S
    assert seconds(found["keepalive_timeout"][0]) == IDLE_KEEP_ALIVE_S
    count, each = found["large_client_header_buffers"]
    assert int(count) * size(each) == HEADER_BYTES
    assert seconds(found["worker_shutdown_timeout"][0]) == settings.shutdown_grace_s
    server = re.search(r"server api:8000 resolve (.*);", NGINX_CONF.read_text()).group(1).split()
    assert f"max_conns={settings.max_connections}" in server
    # Idle connections to a replica are dropped before the replica's own idle timeout drops them.
    upstream = re.search(r"upstream api \{(.*?)\}", NGINX_CONF.read_text(), re.S).group(1)
    assert seconds(directives(upstream)["keepalive_timeout"][0]) < IDLE_KEEP_ALIVE_S


def location(text: str, match: str) -> dict[str, list[str]]:
    """The directives of the location block `location <match> {`."""
    found = re.search(rf"location {re.escape(match)} \{{(.*?)\}}", text, re.S)
    assert found, f"no `location {match}` block"
    return directives(found.group(1))


def test_the_proxy_retries_only_what_is_safe_to_retry() -> None:
    text = NGINX_CONF.read_text()
    everything, ratings = location(text, "/"), location(text, "~ ^/users/[0-9]+/ratings")
    predict = location(text, "= /predict")
    for block in (everything, ratings, predict):
        assert {"error", "timeout", "http_502"} <= set(block["proxy_next_upstream"])
    assert "non_idempotent" not in everything["proxy_next_upstream"] + ratings["proxy_next_upstream"]
    assert "non_idempotent" in predict["proxy_next_upstream"], "a pure function of its body"
    assert "http_503" in everything["proxy_next_upstream"], "a full queue: another replica may have room"
    assert "http_503" not in ratings["proxy_next_upstream"], "the database is down for every replica"


def test_compose_puts_the_pinned_proxy_image_in_front_with_this_file() -> None:
    compose = load_compose({"PORT": "9000"})
    proxy = compose["services"]["proxy"]
    image, _, tag = proxy["image"].partition(":")
    assert image == "nginx", "the official image"
    version = tuple(int(part) for part in re.match(r"(\d+)\.(\d+)", tag).groups())
    assert version >= (1, 28), f"`resolve` in an upstream needs nginx 1.27.3 or later (stable 1.28): {tag}"
    mount = mount_at(proxy, "/etc/nginx/nginx.conf")
    assert mount.read_only and (NGINX_CONF.parent / ".." / ".." / mount.source).resolve() == NGINX_CONF
    listen = directives(NGINX_CONF.read_text())["listen"][0]
    assert proxy["ports"] == [f"9000:{listen}"], "PORT is the proxy's host port"
    assert "resolver" in directives(NGINX_CONF.read_text())
    assert directives(NGINX_CONF.read_text())["resolver"][0] == "127.0.0.11", "Docker's embedded DNS"
    assert re.search(r"upstream api \{[^}]*\bzone api ", NGINX_CONF.read_text()), "resolve needs a zone"
    assert proxy["healthcheck"]["test"][-1].endswith(":8080/nginx-health")
    assert proxy["depends_on"]["api"] == {"condition": "service_healthy"}


# --------------------------------------------------------------------------------------------
# Debian's nginx in front of two stand-in replicas (plain HTTP servers, no TensorFlow)


class Replica:
    """A stand-in api replica on loopback: answers with its name, or with `status` if set."""

    def __init__(self, name: str) -> None:
        replica = self
        self.status, self.hits = 200, []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                replica.hits.append((self.command, self.path, self.headers.get("x-request-id")))
                body = json.dumps({"replica": name}).encode()
                self.send_response(replica.status)
                self.send_header("content-length", str(len(body)))
                self.send_header("x-replica", name)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started = [Replica("a"), Replica("b")]
    yield started
    for replica in started:
        replica.close()


@pytest.fixture
def proxy(replicas: list[Replica], tmp_path: Path) -> Iterator[Nginx]:
    nginx_binary()
    with socket.socket() as probe:  # a port nothing listens on: a replica that is down
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    proxy = Nginx([dead, *(r.address for r in replicas)], tmp_path)
    yield proxy
    proxy.stop()


def request(proxy: Nginx, path: str, method: str = "GET", body: bytes | None = None, **headers: str):
    call = urllib.request.Request(f"{proxy.url}{path}", body, headers, method=method)
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_the_proxy_balances_and_steps_around_a_dead_replica(proxy: Nginx, replicas: list[Replica]) -> None:
    answered = [request(proxy, f"/users/{i}/recommendations") for i in range(20)]
    assert all(status == 200 for status, _, _ in answered), answered
    assert {headers["x-replica"] for _, headers, _ in answered} == {"a", "b"}
    # A POST that never reached the dead replica is sent on too (nothing was sent there).
    assert all(request(proxy, "/predict", "POST", b"{}")[0] == 200 for _ in range(6))
    assert request(proxy, "/nginx-health")[:1] == (200,)
    assert all(hit[2] for r in replicas for hit in r.hits), "every request reaches a replica with an id"


def test_a_503_is_retried_elsewhere_for_a_get_not_for_a_post_nor_a_rating(proxy: Nginx, replicas):
    replicas[0].status = 503
    assert all(request(proxy, "/movies/1")[0] == 200 for _ in range(8)), "retried on the other one"
    time.sleep(2.5)  # past fail_timeout: every replica is in the balance again
    for replica in replicas:
        replica.status = 503

    def sent(method: str) -> int:
        return sum(hit[0] == method for replica in replicas for hit in replica.hits)

    # A 503 from the ratings routes is the database's: passed on, and no replica is taken out.
    assert [request(proxy, "/users/1/ratings/2", "PUT", b"{}")[0] for _ in range(6)] == [503] * 6
    assert sent("PUT") == 6, "a rating reached a replica once per request"
    # A POST that reached a replica is never sent to a second one ...
    posted = [request(proxy, "/admin/reload", "POST", b"{}")[0] for _ in range(4)]
    assert sent("POST") == posted.count(503) >= 1, posted
    # ... but /predict, which changes nothing, is.
    time.sleep(2.5)
    replicas[1].status = 200
    assert all(request(proxy, "/predict", "POST", b"{}")[0] == 200 for _ in range(8))


def test_the_proxy_refuses_what_the_app_would_refuse(proxy: Nginx, replicas: list[Replica]) -> None:
    limit = Settings().max_body_bytes
    assert request(proxy, "/predict", "POST", b"x" * (limit + 1))[0] == 413
    assert request(proxy, "/predict", "POST", b"x" * limit)[0] == 200
    assert request(proxy, "/movies/1", **{"x-big": "y" * (HEADER_BYTES + 1)})[0] in (400, 431, 494)
    before = sum(len(r.hits) for r in replicas)
    assert request(proxy, "/movies/1", **{"x-big": "y" * 4000})[0] == 200
    assert sum(len(r.hits) for r in replicas) == before + 1
