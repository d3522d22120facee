"""Per-request plumbing as one plain ASGI middleware: request id, size limit, metrics, a log line.

Plain ASGI rather than `BaseHTTPMiddleware`, because it sits on every request's hot path.
"""

from __future__ import annotations

import json
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
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        offered = headers.get(REQUEST_ID_HEADER, b"")
        request_id = offered.decode() if SAFE_REQUEST_ID.match(offered) else uuid.uuid4().hex
        status = {"code": 500, "started": False, "refused": False}

        async def send_with_id(message: Message) -> None:
            if status["refused"]:
                return  # the 413 has been sent; whatever the app answers after it is dropped
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        async def refuse(code: int, detail: str) -> None:
            if not status["started"]:
                await send_with_id(_json_start(code, detail))
                await send_with_id(_json_body(detail))
            status["refused"] = True

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                await refuse(413, f"request body over {self.max_body_bytes} bytes")
                return {"type": "http.disconnect"}  # the app stops reading; nothing more is buffered
            return message

        try:
            declared = headers.get(b"content-length", b"")
            if declared and not declared.isdigit():
                await refuse(400, "malformed content-length header")
            elif declared and int(declared) > self.max_body_bytes:
                await refuse(413, f"request body over {self.max_body_bytes} bytes")
            else:
                await self.app(scope, receive_limited, send_with_id)
        finally:
            self._record(scope, request_id, status["code"], time.perf_counter() - started)

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


def _json_start(status: int, detail: str) -> Message:
    length = str(len(_json_body(detail)["body"])).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", length)]
    return {"type": "http.response.start", "status": status, "headers": headers}


def _json_body(detail: str) -> Message:
    return {"type": "http.response.body", "body": json.dumps({"detail": detail}).encode()}
