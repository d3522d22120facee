"""Per-request telemetry: a request id on every response."""

from __future__ import annotations

import logging
import re


def test_every_response_has_a_request_id(client):
    response = client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    drawn = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(drawn) == 3 and all(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", i) for i in drawn), drawn


def test_the_request_log_line_carries_the_request_id_of_the_response(client):
    from app import logs

    lines: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = lines.append
    logs.logger.addHandler(catcher)
    try:
        response = client.get("/users/7/recommendations", headers={"x-request-id": "trace-me-42"})
        unnamed = client.get("/healthz")
    finally:
        logs.logger.removeHandler(catcher)
    requests = {
        record.fields["request_id"]: record.fields for record in lines if record.getMessage() == "request"
    }
    assert response.headers["x-request-id"] == "trace-me-42"
    line = requests["trace-me-42"]
    assert (line["path"], line["status"], line["method"]) == ("/users/7/recommendations", 200, "GET")
    assert line["model_version"] and line["batch_size"] >= 1 and line["latency_ms"] > 0
    assert unnamed.headers["x-request-id"] in requests
