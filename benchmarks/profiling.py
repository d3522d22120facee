"""Sampling the server under load with py-spy and summarising where its time goes.

py-spy (`pip install py-spy`) attaches to the server's pid and records collapsed stacks, one root
frame per thread. py-spy drops samples of threads idle in epoll/select, but not of threads blocked
on a lock or a queue (a futex looks the same as waiting for the GIL), so stacks whose innermost
Python frame is such a wait (`Condition.wait`, a thread pool's idle `_worker`) are counted as idle
here. Figures are percentages of wall time of one core (samples / (rate x seconds)), per thread
group: the event loop (MainThread), the model worker (`model_*`), and any other threads.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
IDLE_LEAVES = {
    "Condition.wait (threading.py)",
    "Event.wait (threading.py)",
    "Queue.get (queue.py)",
    "_worker (concurrent/futures/thread.py)",
    "WorkerThread.run (anyio/_backends/_asyncio.py)",
    "QueueListener.dequeue (logging/handlers.py)",
}


# Where a busy sample's time goes: the innermost frame on its stack that matches a marker decides.
CATEGORIES = (
    ("garbage collection (native frames only)", ("gc_collect",)),
    ("thread-pool hop for sync dependencies (run_in_threadpool)", ("run_in_threadpool",)),
    ("socket send (uvicorn RequestResponseCycle.send)", ("RequestResponseCycle.send",)),
    ("request log line and metrics (app/middleware.py _record)", ("RequestTelemetry._record",)),
    ("micro-batcher (app/batcher.py)", ("MicroBatcher.",)),
    ("Keras call (predict_on_batch)", ("predict_on_batch",)),
    ("top-k selection (app/ranking.py top_k_unseen)", ("top_k_unseen",)),
    ("batch functions (app/model.py)", ("recommend_batch", "predict_batch")),
    ("thread-to-loop future hand-off", ("_call_set_state", "Future.set_result", "call_soon_threadsafe")),
    (
        "response validation and JSON (serialize_response)",
        ("serialize_response", "_prepare_response_content"),
    ),
    ("route code (app/api.py)", ("(app/api.py)",)),
    (
        "request parsing and validation (solve_dependencies)",
        ("solve_dependencies", "Request.body", "Request.json"),
    ),
    ("HTTP parsing (uvicorn data_received)", ("data_received", "on_headers_complete", "on_message_complete")),
)
LOOP_INTERNALS = "event loop internals (uvloop C code: sockets, callbacks)"


def category(frames: list[str]) -> str:
    if frames[-1].startswith("Runner.run (asyncio/runners.py)"):
        return LOOP_INTERNALS  # the outermost Python frame of the loop thread is the innermost one
    for frame in reversed(frames):
        for label, markers in CATEGORIES:
            if any(marker in frame for marker in markers):
                return label
    return "other framework code (middleware chain, routing)"


def py_spy_path() -> str | None:
    beside_python = Path(sys.executable).with_name("py-spy")
    return str(beside_python) if beside_python.exists() else shutil.which("py-spy")


def start_recording(
    pid: int, seconds: int, out: Path, rate: int = 100, native: bool = False
) -> subprocess.Popen:
    """Starts `py-spy record` on `pid` for `seconds`, writing collapsed stacks to `out`."""
    found = py_spy_path()
    if found is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy (into this environment)")
    command = [found, "record", "-p", str(pid), "-d", str(seconds), "-r", str(rate)]
    # Blocking (py-spy's default) pauses the server at each sample: slower (the profiled run is not
    # counted), but consistent stacks; --nonblocking read torn stacks here and misattributed time.
    command += ["--format", "raw", "--threads", "-o", str(out)]
    if native:
        command.append("--native")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def short_frame(frame: str) -> str:
    """'run (/x/site-packages/pkg/mod.py:12)' -> 'run (pkg/mod.py)': one name per function."""
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/", "/lib/python3.12/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['function']} ({file})"


def thread_group(root: str) -> str:
    """'thread (123): MainThread' -> 'MainThread'; numbered pool threads share one group."""
    name = root.split("): ", 1)[1] if "): " in root else root
    name = re.sub(r"_\d+$", "_*", name)
    return "event loop (MainThread)" if name == "MainThread" else name


def summarise(collapsed: Path, rate: int, seconds: float, top: int = 25) -> dict[str, Any]:
    """Busy share per thread group, and each group's top functions, inclusive and self."""
    wall = rate * seconds
    busy: Counter[str] = Counter()
    inclusive: dict[str, Counter[str]] = {}
    own: dict[str, Counter[str]] = {}
    categories: dict[str, Counter[str]] = {}
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        root, *frames = stack.split(";")
        frames = [short_frame(f) for f in frames]
        if not frames or frames[-1] in IDLE_LEAVES:
            continue
        group = thread_group(root)
        busy[group] += count
        for name in set(frames):
            inclusive.setdefault(group, Counter())[name] += count
        own.setdefault(group, Counter())[frames[-1]] += count
        categories.setdefault(group, Counter())[category(frames)] += count

    def share(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        return [
            {"function": name, "percent_of_wall": round(100 * n / wall, 1)}
            for name, n in counter.most_common(limit)
        ]

    return {
        "rate_hz": rate,
        "seconds": seconds,
        "busy_percent_of_wall": {group: round(100 * n / wall, 1) for group, n in busy.most_common()},
        "categories": {group: share(counter, top) for group, counter in categories.items()},
        "inclusive": {group: share(counter, top) for group, counter in inclusive.items()},
        "self": {group: share(counter, top) for group, counter in own.items()},
    }


def summary_text(summary: dict[str, Any], top: int = 12) -> str:
    lines = [
        f"py-spy at {summary['rate_hz']} Hz for {summary['seconds']} s; percentages of wall time "
        "(100% = one core busy all along)"
    ]
    for group, percent in summary["busy_percent_of_wall"].items():
        if percent < 1:
            continue
        lines.append(f"{group}: busy {percent}%")
        lines.append("  by category:")
        lines += [f"    {f['percent_of_wall']:5.1f}%  {f['function']}" for f in summary["categories"][group]]
        lines.append("  inclusive:")
        lines += [
            f"    {f['percent_of_wall']:5.1f}%  {f['function']}"
            for f in summary["inclusive"][group]
            if not f["function"].startswith(BOILERPLATE)
        ][:top]
        lines.append("  self:")
        lines += [f"    {f['percent_of_wall']:5.1f}%  {f['function']}" for f in summary["self"][group][:top]]
    return "\n".join(lines)


# Frames on every stack of a thread (interpreter and server start-up); they say nothing.
BOILERPLATE = (
    "_run_module_as_main",
    "_run_code",
    "<module>",
    "main (app/__main__.py)",
    "main (benchmarks/gcstats.py)",
    "run (uvicorn/main.py)",
    "asyncio_run",
    "Runner.run (asyncio/runners.py)",
    "Server.run",
    "Thread._bootstrap",
    "Thread.run",
    "_worker (concurrent",
)
