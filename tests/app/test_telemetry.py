"""Per-request telemetry: a request id on every response."""

from __future__ import annotations

import re


def test_every_response_has_a_request_id(client):
    response = client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/healthz").headers["x-request-id"])
