"""Per-request telemetry as one plain ASGI middleware: request id, metrics and a log line.

Plain ASGI rather than `BaseHTTPMiddleware`, because it sits on every request's hot path.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import log
from app.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"
SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


class RequestTelemetry:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = offered.decode() if SAFE_REQUEST_ID.match(offered) else uuid.uuid4().hex
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, request_id, status, time.perf_counter() - started)

    def _record(self, scope: Scope, request_id: str, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(seconds)
        state: dict[str, Any] = scope.get("state", {})
        log(
            "request",
            request_id=request_id,
            method=method,
            path=scope["path"],
            status=status,
            latency_ms=round(seconds * 1000, 2),
            batch_size=state.get("batch_size"),
            model_version=state.get("model_version"),
        )
