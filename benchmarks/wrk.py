"""Driving a server with wrk and load.lua; each run's figures come back as one `WrkRun`."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.bundle import ENCODERS_FILE
from app.bundle_store import current_bundle_path

ENDPOINTS = ("recommendations", "predict")
ERROR_FIELDS = ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts")
INSTALL_HINT = "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu, as root) or `brew install wrk`"


@dataclass(frozen=True)
class WrkRun:
    """One bounded wrk run against one endpoint at one concurrency; the load benchmark adds what the
    server and the machine did meanwhile, and with --repeat every round's figures.

    Latencies are wrk's, corrected for coordinated omission; a request slower than `timeout_s` is a
    timeout, left out of them, so they say little once over 1% of requests time out (`overloaded`).
    """

    endpoint: str
    connections: int
    seconds: float
    requests: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    non_2xx: int  # responses with a status of 400 or more: these servers send no 1xx or 3xx
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int
    timeout_s: float
    server_cpu_percent: float | None = None  # of one core
    other_cpu_percent: float | None = None  # processes other than the server and wrk, % of one core
    mean_batch_size: float | None = None  # requests per model call (the real server's)
    rps_rounds: tuple[float, ...] = ()
    p99_rounds: tuple[float, ...] = ()

    @property
    def errors(self) -> int:
        return sum(getattr(self, name) for name in ERROR_FIELDS)

    @property
    def overloaded(self) -> bool:
        return self.requests == 0 or self.timeouts > 0.01 * self.requests

    @property
    def p99_text(self) -> str:
        return f">{self.timeout_s * 1000:.0f}" if self.overloaded else f"{self.p99_ms:.1f}"


def known_ids(model_dir: Path) -> tuple[list[int], list[int]]:
    """The user and the movie ids the current bundle of `model_dir` knows (its encoders.json)."""
    encoders = json.loads((current_bundle_path(model_dir) / ENCODERS_FILE).read_text())
    return encoders["users"], encoders["movies"]


def predict_body(users: list[int], movies: list[int], pairs: int, rng: np.random.Generator) -> str:
    """A /predict body of `pairs` random (user, movie) pairs, as compact JSON."""
    chosen = zip(rng.choice(users, pairs).tolist(), rng.choice(movies, pairs).tolist(), strict=True)
    return json.dumps({"pairs": [{"user_id": u, "movie_id": m} for u, m in chosen]}, separators=(",", ":"))


def write_load_files(model_dir: Path, folder: Path, pairs: int = 100, bodies: int = 1000) -> dict[str, Path]:
    """load.lua's input per endpoint: the known user ids, one a line; /predict bodies of `pairs`
    random known pairs, one a line."""
    (users, movies), rng = known_ids(model_dir), np.random.default_rng(42)
    (folder / "users.txt").write_text("".join(f"{user}\n" for user in users))
    (folder / "bodies.txt").write_text(
        "".join(predict_body(users, movies, pairs, rng) + "\n" for _ in range(bodies))
    )
    return {"recommendations": folder / "users.txt", "predict": folder / "bodies.txt"}


def run_wrk(url: str, endpoint: str, data: Path, connections: int, duration: float, timeout=5.0) -> WrkRun:
    """`wrk -t2 -cN -dDs --latency --timeout 5s -s load.lua URL -- ENDPOINT DATA`, bounded in time."""
    if shutil.which("wrk") is None:
        raise RuntimeError(INSTALL_HINT)
    seconds, script = max(1, round(duration)), Path(__file__).with_name("load.lua")
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["--timeout", f"{timeout:g}s", "-s", str(script), url, "--", endpoint, str(data)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    elapsed, errors, ms = raw["duration_us"] / 1e6, raw["errors"], raw["latency_us"]
    rate = round(raw["requests"] / elapsed, 1) if elapsed else 0.0
    latencies = [round(ms[p] / 1000, 2) for p in ("p50", "p95", "p99")]
    counts = [errors[kind] for kind in ("status", "connect", "read", "write", "timeout")]  # as ERROR_FIELDS
    return WrkRun(
        endpoint, connections, round(elapsed, 3), raw["requests"], rate, *latencies, *counts, timeout
    )
