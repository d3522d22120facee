"""Per-request telemetry as one plain ASGI middleware: request id, metrics and a log line.

Plain ASGI rather than `BaseHTTPMiddleware`, because it sits on every request's hot path. A
request whose client went away (`CLIENT_GONE`, set where that is seen: `app.request_limits`
when reading the body, `app.protocol` when the connection closes, which cancels the request)
is recorded with status 499, nginx's "client closed request", whatever was answered to no one.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import log
from app.metrics import Metrics
from app.request_limits import CLIENT_GONE

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
        except asyncio.CancelledError:
            if not scope.get(CLIENT_GONE):
                raise
            task = asyncio.current_task()  # cancelled because its connection closed: nothing to answer
            if task is not None:
                task.uncancel()
        finally:
            gone = scope.get(CLIENT_GONE, False)
            self._record(scope, request_id, 499 if gone else status, time.perf_counter() - started)

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
