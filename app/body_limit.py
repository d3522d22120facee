"""Refusing request bodies over `MAX_BODY_BYTES` before they are read into memory.

A plain ASGI middleware. A declared `content-length` over the limit (or a malformed one) is
refused at once; a body that streams in without one is counted as it arrives and refused as soon
as it passes the limit, so no more of it is buffered. Whatever the app answers after the refusal
is dropped.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"started": False, "refused": False}

        async def send_unless_refused(message: Message) -> None:
            if state["refused"]:
                return  # the refusal has been sent; whatever the app answers after it is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        async def refuse(code: int, detail: str) -> None:
            if not state["started"]:
                body = json.dumps({"detail": detail}).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": code, "headers": headers})
                await send({"type": "http.response.body", "body": body})
            state["refused"] = True

        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                await refuse(413, f"request body over {self.max_body_bytes} bytes")
                return {"type": "http.disconnect"}  # the app stops reading; nothing more is buffered
            return message

        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared and not declared.isdigit():
            await refuse(400, "malformed content-length header")
        elif declared and int(declared) > self.max_body_bytes:
            await refuse(413, f"request body over {self.max_body_bytes} bytes")
        else:
            await self.app(scope, receive_limited, send_unless_refused)
