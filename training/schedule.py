"""`python -m training --every 6h`: train and publish, then sleep until the next run, until SIGTERM.

Runs start on a fixed grid (the first run's start plus whole periods), so a slow run delays the
next one to the following grid point rather than shifting the schedule. A failed run is reported
in one line and retried at the next period; it never touches the published bundle (publishing is
atomic, see `app.bundle_store`). SIGTERM ends the loop cleanly at any moment: asleep, at once;
mid-run, the run is abandoned (its staging folder removed) and `current` stays as it was.
"""

from __future__ import annotations

import argparse
import math
import re
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Stopped(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt, so that no handler swallows it)."""


def parse_period(text: str) -> float:
    """'30s', '15m', '6h', '1d', '1.5h' to seconds (argparse type)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a period such as 30s, 15m, 6h or 1d")
    return float(match[1]) * UNITS[match[2]]


def next_start(first_start: float, period_s: float, now: float) -> float:
    """The first point of the grid `first_start + k * period_s` (k >= 1) that is not in the past."""
    return first_start + period_s * max(1, math.ceil((now - first_start) / period_s))


def run_every(
    period_s: float,
    run_once: Callable[[], str],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Calls `run_once` (which returns its outcome as one line) every `period_s` until SIGTERM."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise Stopped

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        first = clock()
        while True:
            outcome = run_once()
            wake = next_start(first, period_s, clock())
            at = datetime.now(UTC) + timedelta(seconds=wake - clock())
            say(f"{outcome}; next run at {at:%Y-%m-%dT%H:%M:%SZ}")
            sleep(max(0.0, wake - clock()))
    except Stopped:
        say("stopped by SIGTERM; the published bundle is the last good run's")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def say(line: str) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {line}", file=sys.stderr, flush=True)
