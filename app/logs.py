"""Structured logs: one JSON object per line on stderr, for requests, model events and uvicorn.

Every line goes through one queue to one writer thread, uvicorn's own lines included
(`uvicorn_log_config`), so lines never interleave and a slow stderr never stalls the event loop.
The queue is bounded: past `MAX_QUEUED_LINES` waiting lines, new ones are dropped and counted
(`dropped_lines`, exported as `log_lines_dropped`) rather than held in memory without limit.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import time
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("recommender")
MAX_QUEUED_LINES = 10_000
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        if record.name != logger.name:
            line["logger"] = record.name
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class Handoff(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: formatting and the write happen there.

    Drops a record, counting it, when `MAX_QUEUED_LINES` are already waiting.
    """

    dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        if self.queue.qsize() >= MAX_QUEUED_LINES:
            Handoff.dropped += 1
            return
        self.queue.put_nowait(record)


_handoff: Handoff | None = None


def shared_handler() -> Handoff:
    """The process's one handler to the writer thread, made on first use (`dictConfig` factory)."""
    global _handoff
    if _handoff is None:
        writer = logging.StreamHandler(sys.stderr)
        writer.setFormatter(JsonLines())
        lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(lines, writer)
        listener.start()
        atexit.register(listener.stop)  # flushes what is queued at exit
        _handoff = Handoff(lines)
    return _handoff


def dropped_lines() -> int:
    return Handoff.dropped


def configure(level: str) -> None:
    """Sends the service's own log lines to stderr as JSON, once per process; other libraries'
    warnings too, through the root logger. TensorFlow's logger gives up the plain-text handler it
    adds when it is first used before the root logger has one (in a uvicorn worker process, say)
    and drops its retracing warning (`expected_retracing`)."""
    handler = shared_handler()
    if handler not in logger.handlers:
        logger.addHandler(handler)
    root = logging.getLogger()
    if handler not in root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    logger.setLevel(level.upper())
    logger.propagate = False
    tensorflow = logging.getLogger("tensorflow")
    tensorflow.handlers.clear()
    tensorflow.propagate = True
    if expected_retracing not in tensorflow.filters:
        tensorflow.addFilter(expected_retracing)


def expected_retracing(record: logging.LogRecord) -> bool:
    """False for TensorFlow's "triggered tf.function retracing" warning, which is expected here:
    every derived model traces once per padded batch shape (`scoring.predict_padded`), and the
    warning counts the traces of all of them as one function's (they share Keras's code)."""
    return "triggered tf.function retracing" not in record.getMessage()


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn: its loggers through the same JSON writer.

    uvicorn applies it in each process it starts (worker processes included).
    """
    through = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"json": {"()": f"{__name__}.shared_handler"}},
        "loggers": {name: dict(through) for name in UVICORN_LOGGERS},
    }


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})


class Throttle:
    """Logs a repeated event (same key) at most once per `interval` seconds.

    The line after a quiet spell says how many were left out meanwhile (`repeated`).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[Any, tuple[float, int]] = {}

    def log(self, key: Any, event: str, level: int = logging.INFO, **fields: Any) -> bool:
        now = time.monotonic()
        logged_at, left_out = self._last.get(key, (-self.interval, 0))
        if now - logged_at < self.interval:
            self._last[key] = (logged_at, left_out + 1)
            return False
        if len(self._last) > 1000:  # keys are reasons: bounded in practice, and bounded here
            self._last.clear()
        self._last[key] = (now, 0)
        log(event, level, **fields, **({"repeated": left_out} if left_out else {}))
        return True
