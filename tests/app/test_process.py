"""`python -m app` as a real process: start-up refusals, the docs page in a browser, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from app.bundle import write_manifest
from benchmarks import attacks
from benchmarks.servers import Server

# Each test waits on real processes with limits of its own (120 s for a server to exit, 60 s for it
# to be ready, 120 s for Chromium), above the suite's ceiling: those limits fail first and say
# what hung.
pytestmark = pytest.mark.timeout(300)


def test_a_missing_bundle_stops_start_up_with_a_way_to_make_one(tmp_path):
    server = Server(tmp_path / "nothing-here", ready_within=None)
    assert server.wait(120) != 0
    stderr = server.log()
    assert "nothing-here/current" in stderr
    assert "python -m training" in stderr
    assert "Traceback" not in stderr


def test_a_corrupt_bundle_stops_start_up_naming_the_file(tmp_path, tiny_model_dir):
    broken = tmp_path / "models"
    shutil.copytree(tiny_model_dir.resolve() / "current", broken / "v1", symlinks=False)
    (broken / "current").symlink_to("v1")
    (broken / "v1" / "model.keras").write_bytes(b"not a keras archive")
    server = Server(broken, ready_within=None)
    assert server.wait(120) != 0
    stderr = server.log()
    assert "model.keras" in stderr and "python -m training" in stderr


def test_an_invalid_setting_stops_start_up_naming_it(tiny_model_dir):
    server = Server(tiny_model_dir, {"BATCH_WINDOW_MS": "5000"}, ready_within=None)
    assert server.wait(120) == 2
    stderr = server.log()
    assert "BATCH_WINDOW_MS" in stderr and "Traceback" not in stderr


# Root reads any folder; without these two capabilities it cannot, as any other user could not.
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def error_lines(log: str) -> list[dict]:
    """The server's JSON log lines at level error (TensorFlow's own start-up lines aside)."""
    found = []
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("level") == "error":
                found.append(record)
    return found


# TensorFlow's own C++ lines at import (absl's format), before any Python logging exists.
TENSORFLOW_LINE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl|To enable the following)")


def assert_json_lines(log: str) -> None:
    """Every line the server wrote, uvicorn's included, is one JSON object (TensorFlow's aside)."""
    for line in log.splitlines():
        if not TENSORFLOW_LINE.match(line):
            assert isinstance(json.loads(line), dict), line


def model_without_members(folder: Path) -> None:
    import keras

    inputs = keras.Input((2,), dtype="int32", name="pairs")
    score = keras.layers.Dense(1, activation="sigmoid")(keras.ops.cast(inputs, "float32"))
    keras.Model(inputs, {"rating": score, "ranking": score}).save(folder / "model.keras")
    write_manifest(folder)


@pytest.mark.parametrize("case", ["CORS_ORIGINS=notjson", "no member layers", "unreadable MODEL_DIR"])
def test_a_start_up_failure_is_one_error_line_and_exit_status_2(tmp_path, tiny_model_dir, case):
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models, symlinks=True)
    env, prefix, says = {}, [], case.split("=")[0]
    if case == "CORS_ORIGINS=notjson":
        env = {"CORS_ORIGINS": "notjson"}
    elif case == "no member layers":
        model_without_members(models.resolve() / "current")
        says = "member0_user_embedding"
    else:
        models.chmod(0)
        prefix, says = UNPRIVILEGED, "Permission denied"
    server = Server(models, env, ready_within=None, prefix=prefix)
    try:
        status = server.wait(120)
    finally:
        models.chmod(0o755)
    log = server.log()
    assert status == 2, log
    assert "Traceback" not in log, log
    errors = error_lines(log)
    assert len(errors) == 1 and says in json.dumps(errors[0]), log


def test_an_unreadable_model_dir_at_reload_is_a_refusal_logged_once(tmp_path, tiny_model_dir):
    models = tmp_path / "models"
    shutil.copytree(tiny_model_dir, models, symlinks=True)
    env = {"ADMIN_TOKEN": "a", "RELOAD_INTERVAL_S": "0.1"}
    with Server(models, env, prefix=UNPRIVILEGED) as server:
        models.chmod(0)
        try:
            reload = httpx.post(f"{server.url}/admin/reload", headers={"authorization": "Bearer a"})
            time.sleep(1)  # about 10 checks in the background
        finally:
            models.chmod(0o755)
        refused = httpx.get(f"{server.url}/metrics").text
    assert reload.status_code == 200 and reload.json()["outcome"] == "refused", reload.text
    log = server.log()
    assert "Traceback" not in log, log
    errors = error_lines(log)
    assert len(errors) == 1 and "Permission denied" in errors[0]["reason"], log
    assert 'model_events_total{event="refused"}' in refused


def test_sigterm_drains_in_flight_requests_and_exits_0(tiny_model_dir):
    user_id = json.loads((tiny_model_dir / "current" / "encoders.json").read_text())["users"][0]

    def ask(_: int) -> int:
        with httpx.Client(timeout=10) as client:  # a connection each: no keep-alive races
            return client.get(f"{url}/users/{user_id}/recommendations").status_code

    # A long batching window holds every request inside the server; SIGTERM comes once all 16 wait.
    settings = {"BATCH_WINDOW_MS": "1000", "RELOAD_INTERVAL_S": "0"}
    with Server(tiny_model_dir, settings) as server, ThreadPoolExecutor(16) as pool:
        url = server.url
        futures = [pool.submit(ask, i) for i in range(16)]
        deadline = time.monotonic() + 30
        while 'model_queue_depth{kind="recommend"} 16.0' not in httpx.get(f"{url}/metrics").text:
            assert time.monotonic() < deadline, "the 16 requests never all waited in the queue"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        statuses = [future.result() for future in futures]
        assert server.wait(15) == 0
    assert statuses == [200] * 16
    assert_json_lines(server.log())
    assert "Application startup complete" in server.log()


@pytest.mark.anyio
async def test_sigterm_answers_every_request_received_and_readiness_says_503_at_once(tiny_model_dir):
    """64 requests of 10,000 pairs fully sent, then SIGTERM: every one answered 200, a /readyz
    whose head was on its way answered 503, exit status 0 (`benchmarks.attacks`' scenario)."""
    settings = {"RELOAD_INTERVAL_S": "0", "MAX_QUEUED_PAIRS": "1000000"}  # no 503 for too much work
    with Server(tiny_model_dir, settings) as server:
        assert await attacks.sigterm(server, tiny_model_dir)
    predictions = [line for line in server.log().splitlines() if '"path": "/predict"' in line]
    assert len(predictions) == 64 and all('"status": 200' in line for line in predictions)
    assert_json_lines(server.log())


@pytest.mark.anyio
async def test_sigterm_exits_within_the_grace_whatever_a_client_holds(tiny_model_dir):
    settings = {"RELOAD_INTERVAL_S": "0", "SHUTDOWN_GRACE_S": "2", "TIMEOUT_HEADERS_S": "60"}
    with Server(tiny_model_dir, settings) as server:
        _, stuck = await attacks.send(server.port, b"GET /healthz HTTP/1.1\r\nx-slow: ")
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        status = await asyncio.to_thread(server.wait, 30)
        took = time.monotonic() - started
        stuck.transport.abort()
    assert status == 0 and took < 2.5, (status, took)


@pytest.mark.anyio
async def test_the_guards_and_the_drain_hold_in_uvicorn_worker_processes(tiny_model_dir):
    """`WORKERS=2`, uvicorn's supervisor: an idle connection times out, a header over the limit gets
    431, each worker names itself, the log is JSON, and SIGTERM drains each worker."""
    settings = {
        "WORKERS": "2",
        "RELOAD_INTERVAL_S": "0",
        "TIMEOUT_KEEP_ALIVE_S": "1",
        "MAX_HEADER_BYTES": "4096",
    }
    with Server(tiny_model_dir, settings) as server:
        replica = server.fetch("/model")["replica"]
        assert int(replica.rpartition("-")[2]) in child_pids(server.pid)
        idle, _ = await attacks.send(server.port, b"")
        large, _ = await attacks.send(
            server.port, attacks.request("GET", "/healthz", headers=f"x: {'a' * 8000}\r\n")
        )
        assert (await attacks.answer(large))[0] == 431
        assert await attacks.closed_after(idle, 5) is not None
        ready, writer = await attacks.send(server.port, b"GET /readyz HTTP/1.1\r\nhost: x\r\n")
        await asyncio.sleep(0.1)
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.5)  # the supervisor looks at signals every 0.5 s, then signals each worker
        writer.write(b"\r\n")
        assert (await attacks.answer(ready))[0] == 503
        assert await asyncio.to_thread(server.wait, 30) == 0
    assert_json_lines(server.log())
    assert server.log().count("Application startup complete") == 2


def child_pids(pid: int) -> set[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def test_a_worker_that_cannot_load_the_bundle_stops_the_start_with_exit_status_2(tmp_path, tiny_model_dir):
    broken = tmp_path / "models"
    shutil.copytree(tiny_model_dir.resolve() / "current", broken / "v1", symlinks=False)
    (broken / "current").symlink_to("v1")
    (broken / "v1" / "model.keras").write_bytes(b"not a keras archive")
    server = Server(broken, {"WORKERS": "2"}, ready_within=None)
    assert server.wait(120) == 2
    assert "model.keras" in server.log() and "a worker could not start" in server.log()


def test_docs_page_renders_offline_in_headless_chromium(tiny_model_dir, tmp_path):
    if not shutil.which("chromium"):
        pytest.fail(
            "no chromium on PATH: apt-get install chromium (Debian's headless browser)", pytrace=False
        )
    with Server(tiny_model_dir, {"RELOAD_INTERVAL_S": "0"}) as server:
        url = server.url
        rendered = subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                # The network is closed: every host but this machine fails to resolve.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{url}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    dom = rendered.stdout
    assert "swagger-ui" in dom, rendered.stderr[-2000:]
    assert 'data-path="/users/{user_id}/recommendations"' in dom
    assert 'data-path="/predict"' in dom
