"""Structured logs: one JSON object per line on stderr, for requests and model events."""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger("recommender")


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class Handoff(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: formatting and the write happen there."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure(level: str) -> None:
    """Sends the service's own log lines to stderr as JSON, once per process.

    A request's line is queued, not written, on the event loop; a listener thread formats and
    writes it, so a slow or busy stderr never stalls request handling.
    """
    if not any(isinstance(h, Handoff) for h in logger.handlers):
        writer = logging.StreamHandler(sys.stderr)
        writer.setFormatter(JsonLines())
        lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(lines, writer)
        listener.start()
        atexit.register(listener.stop)  # flushes what is queued at exit
        logger.addHandler(Handoff(lines))
    logger.setLevel(level.upper())
    logger.propagate = False


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"fields": fields})
