"""The log: one JSON writer, and a bounded queue in front of it."""

from __future__ import annotations

import json
import logging
import queue

from app import logs


def test_lines_beyond_the_queue_bound_are_dropped_and_counted(monkeypatch):
    monkeypatch.setattr(logs, "MAX_QUEUED_LINES", 3)
    lines: queue.SimpleQueue = queue.SimpleQueue()
    handoff = logs.Handoff(lines)  # no writer thread behind it: nothing drains the queue
    before = logs.dropped_lines()
    for i in range(5):
        handoff.handle(logging.LogRecord("recommender", logging.INFO, __file__, 1, f"line {i}", None, None))
    assert lines.qsize() == 3
    assert logs.dropped_lines() == before + 2


def test_a_line_is_one_json_object_naming_foreign_loggers():
    record = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, "Invalid %s", ("HTTP",), None)
    assert json.loads(logs.JsonLines().format(record)) | {"time": None} == {
        "time": None,
        "level": "warning",
        "event": "Invalid HTTP",
        "logger": "uvicorn.error",
    }


def test_a_repeated_event_is_logged_once_per_interval(monkeypatch):
    logged = []
    monkeypatch.setattr(logs, "log", lambda event, level=0, **fields: logged.append(fields))
    clock = iter([100.0, 101.0, 102.0, 500.0])
    monkeypatch.setattr(logs.time, "monotonic", lambda: next(clock))
    throttle = logs.Throttle(300)
    assert [throttle.log("same", "e", reason="r") for _ in range(4)] == [True, False, False, True]
    assert logged == [{"reason": "r"}, {"reason": "r", "repeated": 2}]


def test_tensorflow_lines_go_through_the_json_writer_without_the_expected_retracing_warning(monkeypatch):
    """A plain-text handler TensorFlow attached before `configure` (as in a uvicorn worker) is
    removed, its warnings reach the root logger's JSON writer, and the retracing one is dropped."""
    tensorflow = logging.getLogger("tensorflow")
    monkeypatch.setattr(tensorflow, "handlers", [logging.StreamHandler()])
    monkeypatch.setattr(tensorflow, "filters", [])
    monkeypatch.setattr(tensorflow, "propagate", False)
    logs.configure("info")
    seen: list[str] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    recorder = Recorder()
    logging.getLogger().addHandler(recorder)
    try:
        tensorflow.warning("5 out of the last 6 calls to <function f> triggered tf.function retracing.")
        tensorflow.warning("something else")
    finally:
        logging.getLogger().removeHandler(recorder)
    assert tensorflow.handlers == [] and tensorflow.propagate
    assert seen == ["something else"]
