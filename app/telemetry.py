"""Per-request telemetry as one plain ASGI middleware: request id, metrics and a log line, and
the headers that say who answered (`x-request-id`, `x-replica`, `x-model-version`).

Behind a load balancer, a mixed fleet (some replicas already on a new bundle, some not yet) is
visible from the responses alone. Plain ASGI rather than `BaseHTTPMiddleware`, and one
middleware rather than several, because it sits on every request's hot path: headers are
encoded once (a version's once per version), metric children looked up once per label set, and
request ids drawn from a per-process random prefix and a counter, not a `uuid4` each. A
request whose client went away (`CLIENT_GONE`, set where that is seen: `app.request_limits`
when reading the body, `app.protocol` when the connection closes, which cancels the request)
is recorded with status 499, nginx's "client closed request", whatever was answered to no one.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import log
from app.metrics import Metrics
from app.request_limits import CLIENT_GONE

REQUEST_ID_HEADER = b"x-request-id"
REPLICA_HEADER = b"x-replica"
MODEL_VERSION_HEADER = b"x-model-version"
SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


class RequestTelemetry:
    def __init__(self, app: ASGIApp, metrics: Metrics, replica: str) -> None:
        self.app = app
        self.metrics = metrics
        self.replica = (REPLICA_HEADER, replica.encode("latin-1", "replace"))
        self._version: tuple[str | None, list[tuple[bytes, bytes]]] = (None, [])
        self._ids = map("{}-{:x}".format, itertools.repeat(secrets.token_hex(6)), itertools.count())
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _version_header(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The bundle this request was answered from, else the one in service now."""
        version = scope.get("state", {}).get("model_version")
        if version is None:
            bundle = getattr(getattr(scope["app"].state, "service", None), "bundle", None)
            version = bundle and bundle.version
        if version != self._version[0]:  # a new bundle: encode its name once
            self._version = (version, [(MODEL_VERSION_HEADER, version.encode())] if version else [])
        return self._version[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = dict(scope["headers"]).get(REQUEST_ID_HEADER, b"")
        request_id = offered.decode() if SAFE_REQUEST_ID.match(offered) else next(self._ids)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                    self.replica,
                    *self._version_header(scope),
                ]
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
        key = (method, route, status)
        if (children := self._children.get(key)) is None:
            children = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
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
