"""Driving a server with wrk (load.lua) and reading its results back as numbers."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LUA_SCRIPT = Path(__file__).with_name("load.lua")
MARKER = "WRK_JSON "
INSTALL_HINT = (
    "wrk is not installed. Install it with `apt-get install -y wrk` (Debian/Ubuntu, as root) or "
    "`brew install wrk` (macOS), then run this again."
)
ENDPOINTS = ("recommendations", "predict")


def wrk_path() -> str | None:
    return shutil.which("wrk")


def wrk_version() -> str:
    found = wrk_path()
    if found is None:
        return "missing"
    done = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else "?"


@dataclass(frozen=True)
class LoadFiles:
    """The files load.lua reads: known user ids, and /predict bodies of known pairs."""

    users: Path
    bodies: Path

    def for_endpoint(self, endpoint: str) -> Path:
        return self.users if endpoint == "recommendations" else self.bodies


def write_load_files(
    encoders_path: Path, folder: Path, pairs_per_body: int = 100, bodies: int = 1000, seed: int = 42
) -> LoadFiles:
    """Known ids from the bundle's encoders.json; bodies of random known (user, movie) pairs."""
    encoders = json.loads(encoders_path.read_text())
    users, movies = encoders["users"], encoders["movies"]
    rng = np.random.default_rng(seed)
    users_file = folder / "users.txt"
    users_file.write_text("\n".join(str(u) for u in users) + "\n")
    bodies_file = folder / "predict_bodies.txt"
    with open(bodies_file, "w") as out:
        for _ in range(bodies):
            us = rng.choice(users, pairs_per_body)
            ms = rng.choice(movies, pairs_per_body)
            pairs = [{"user_id": int(u), "movie_id": int(m)} for u, m in zip(us, ms, strict=True)]
            out.write(json.dumps({"pairs": pairs}, separators=(",", ":")) + "\n")
    return LoadFiles(users_file, bodies_file)


def run_wrk(
    url: str,
    endpoint: str,
    data_file: Path,
    *,
    connections: int,
    duration: float,
    threads: int = 2,
    timeout: float = 5.0,
    k: int = 10,
) -> dict:
    """One bounded wrk run; returns throughput, latency percentiles (ms) and error counts."""
    found = wrk_path()
    if found is None:
        raise RuntimeError(INSTALL_HINT)
    seconds = max(1, round(duration))
    command = [
        found,
        f"-t{max(1, min(threads, connections))}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        f"{timeout:g}s",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        endpoint,
        str(data_file),
        str(k),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    raw = json.loads(line[len(MARKER) :])
    elapsed = raw["duration_us"] / 1e6
    errors = raw["errors"]
    latency = {name: value / 1000 for name, value in raw["latency_us"].items()}
    return {
        "endpoint": endpoint,
        "connections": connections,
        "duration_s": round(elapsed, 3),
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {name: round(value, 2) for name, value in latency.items()},
        "non_2xx": raw["non_2xx"],
        "socket_errors": {name: errors[name] for name in ("connect", "read", "write", "timeout")},
        # wrk leaves requests slower than --timeout out of its latency histogram and counts them as
        # timeouts, so percentiles are only meaningful when timeouts are rare.
        "timeout_s": timeout,
    }


def error_count(run: dict) -> int:
    return run["non_2xx"] + sum(run["socket_errors"].values())
