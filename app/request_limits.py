"""Limits every HTTP request meets in the app, as one plain ASGI middleware.

- Body size: a declared `content-length` over `MAX_BODY_BYTES` (or a malformed one) is refused at
  once; a body streaming in without one is counted as it arrives and refused as soon as it passes
  the limit, so no more of it is buffered (413).
- Body bytes in flight: the bytes of every request body received and not yet answered, across
  all requests, stay under `MAX_INFLIGHT_BODY_BYTES`; a body that would pass it is refused (503
  with `Retry-After`). What a body costs in memory (its bytes, then the objects parsed from
  it) lasts until its answer, so a thousand large bodies at once cannot take the memory.
- Deadline: `REQUEST_TIMEOUT_S` from the moment the request has been received whole (its body
  included: a slow upload is the connection's timeout, `TIMEOUT_BODY_S`) to its answer. Past it,
  the request is cancelled where it waits (the model queue gives its place back) and answered
  503 with `Retry-After`. `/admin/` routes have none: a reload must finish.
- A client that goes away while its request is read or worked on is marked in the scope
  (`CLIENT_GONE`) so the telemetry records it as 499, not as the 400 FastAPI answers to no one.

Whatever the app answers after a refusal is dropped. The connection stays open: the rest of a
refused body is read and dropped (`app.protocol`, within `TIMEOUT_BODY_S`), so that the client,
still sending, reads the refusal instead of a reset.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLIENT_GONE = "app.client_gone"  # scope key: the client went away before its answer
NO_DEADLINE_PREFIX = "/admin/"


class RequestLimits:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_inflight_body_bytes: int,
        request_timeout_s: float,
        on_shed: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_inflight_body_bytes = max_inflight_body_bytes
        self.request_timeout_s = request_timeout_s
        self.on_shed = on_shed
        self.inflight_body_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "refused": False}
        held = 0  # this request's share of the body bytes in flight

        async def send_unless_refused(message: Message) -> None:
            if state["refused"]:
                return  # the refusal has been sent; whatever the app answers after it is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        async def refuse(code: int, detail: str, retry: bool = False) -> None:
            if not state["started"]:
                body = json.dumps({"detail": detail}).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                if retry:
                    headers.append((b"retry-after", b"1"))
                state["started"] = True
                await send({"type": "http.response.start", "status": code, "headers": headers})
                await send({"type": "http.response.body", "body": body})
            state["refused"] = True

        received = 0
        timer: asyncio.Timeout | None = None

        async def receive_limited() -> Message:
            nonlocal received, held
            message = await receive()
            if message["type"] == "http.disconnect":
                scope[CLIENT_GONE] = True
                return message
            size = len(message.get("body", b""))
            received += size
            if received > self.max_body_bytes:
                await refuse(413, f"request body over {self.max_body_bytes} bytes")
                return {"type": "http.disconnect"}  # the app stops reading; nothing more is buffered
            if size and self.inflight_body_bytes + size > self.max_inflight_body_bytes:
                self.on_shed("inflight_body_bytes")
                await refuse(503, "too many request bodies in flight; retry shortly", retry=True)
                return {"type": "http.disconnect"}
            self.inflight_body_bytes += size
            held += size
            if not message.get("more_body", False) and timer is not None and deadline is not None:
                timer.reschedule(asyncio.get_running_loop().time() + deadline)  # the body is in
            return message

        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared and not declared.isdigit():
            await refuse(400, "malformed content-length header")
            return
        if declared and int(declared) > self.max_body_bytes:
            await refuse(413, f"request body over {self.max_body_bytes} bytes")
            return
        deadline = None if scope["path"].startswith(NO_DEADLINE_PREFIX) else self.request_timeout_s
        has_body = declared.strip(b"0") != b"" or b"transfer-encoding" in headers
        try:
            async with asyncio.timeout(None if has_body or deadline is None else deadline) as timer:
                await self.app(scope, receive_limited, send_unless_refused)
        except TimeoutError:
            self.on_shed("deadline")
            late = f"not answered within REQUEST_TIMEOUT_S ({deadline:g} s); retry shortly"
            await refuse(503, late, retry=True)
        finally:
            self.inflight_body_bytes -= held
