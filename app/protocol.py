"""uvicorn's httptools protocol with the limits it lacks: timeouts, header size, a connection cap,
requests dropped when their client goes, and a drain that answers what has arrived.

uvicorn (0.54) times a connection out only after a response: a connection that sends nothing, or
a header byte by byte, or half a body, is held forever; headers have no size limit; and a
request whose client has gone is computed anyway. `GuardedProtocol` adds, per connection:

- a deadline for the phase it is in: waiting for a request (`TIMEOUT_KEEP_ALIVE_S`, from the
  connection's start or the last answer), receiving a request's line and headers
  (`TIMEOUT_HEADERS_S`, from its first byte), receiving its body (`TIMEOUT_BODY_S`, once the
  headers are in). A sweep every `SWEEP_S` enforces them: an idle connection is closed, a late
  request is answered 408 and closed. Once the request is in, `REQUEST_TIMEOUT_S` (the app's,
  `app.request_limits`) takes over.
- `MAX_HEADER_BYTES` for the request line and headers together, counted as bytes arrive (a
  header that never ends is cut there, never buffered): 431.
- `MAX_CONNECTIONS` per process: a connection past it evicts the connection that has waited
  longest without a whole request in the app (idle, or sending slowly), so a new client, a health
  check say, always gets in; with none to evict, the newcomer is answered 503.
- a client that goes away during its request cancels the request's task: queued model work is
  dropped before it is computed (`app.batcher`), and the request is recorded as 499.
- `shutdown()`, called by uvicorn for every connection on SIGTERM, marks the service draining
  (`/readyz` 503), answers a request already received or arriving (with `connection: close`),
  and closes an idle connection only once no unread byte waits in its socket: closing with bytes
  unread would reset a request the kernel already holds.

Everything lives in this class and the per-process `Guard`, reached through uvicorn's shared
`ServerState` and its `Config` (`limits`), so it works the same in worker processes started by
uvicorn's multiprocess supervisor, which builds a plain `uvicorn.Server` in each.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import math
import struct
import termios
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.request_limits import CLIENT_GONE

SWEEP_S = 0.25  # how often deadlines are checked
LINGER_S = 1.0  # after an error answer, how long the rest of the request is read and dropped
QUIET_CHECK_S = 0.02  # while draining, how often an idle connection's socket is checked again
IDLE, HEAD, BODY, APP, LINGER = "idle", "head", "body", "app", "linger"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 2048
    max_header_bytes: int = 16_384
    timeout_keep_alive_s: float = 5.0
    timeout_headers_s: float = 10.0
    timeout_body_s: float = 30.0


class Guard:
    """What a process's connections share: who may be evicted (oldest first), the sweep, the drain."""

    def __init__(self, protocol: GuardedProtocol) -> None:
        self.loop = protocol.loop
        self.limits = protocol.limits
        self.connections = protocol.connections
        self.app_state = protocol.app_state
        self.waiting: dict[GuardedProtocol, None] = {}  # no whole request in the app; oldest first
        self.dropping: set[GuardedProtocol] = set()  # closed by us, not yet gone
        self.draining = False
        service = self.app_state.get("service")
        if service is not None:
            service.metrics.connections.set_function(lambda: len(self.connections) - len(self.dropping))
        self.loop.call_later(SWEEP_S, self._sweep)

    @classmethod
    def of(cls, protocol: GuardedProtocol) -> Guard:
        guard = getattr(protocol.server_state, "guard", None)
        if guard is None:
            guard = protocol.server_state.guard = cls(protocol)  # type: ignore[attr-defined]
        return guard

    def count(self, reason: str) -> None:
        service = self.app_state.get("service")
        if service is not None:
            service.metrics.connections_dropped.labels(reason).inc()

    def make_room(self, newcomer: GuardedProtocol) -> None:
        """Over `MAX_CONNECTIONS`: evicts the longest-waiting connection, else refuses the newcomer."""
        oldest = next(iter(self.waiting), newcomer)
        if oldest is newcomer:
            newcomer.reject(503, "too many connections; retry shortly", "refused")
        else:
            oldest.evict()

    def drain(self) -> None:
        if not self.draining:
            self.draining = True
            service = self.app_state.get("service")
            if service is not None:
                service.begin_draining()

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            if isinstance(connection, GuardedProtocol) and connection.deadline <= now:
                connection.expire()
        self.loop.call_later(SWEEP_S, self._sweep)


class GuardedProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: ConnectionLimits = getattr(self.config, "limits", None) or ConnectionLimits()
        self.guard = Guard.of(self)
        self.phase, self.deadline = IDLE, math.inf
        self._head_bytes = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def _too_large(self) -> str:
        return f"request line and headers over MAX_HEADER_BYTES ({self.limits.max_header_bytes})"

    def _enter(self, phase: str, timeout: float | None) -> None:
        self.phase = phase
        self.deadline = math.inf if timeout is None else self.loop.time() + timeout

    # --- the connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter(IDLE, self.limits.timeout_keep_alive_s)
        self.guard.waiting[self] = None
        if len(self.connections) - len(self.guard.dropping) > self.limits.max_connections:
            self.guard.make_room(self)

    def connection_lost(self, exc: Exception | None) -> None:
        in_request = self.cycle is not None and not self.cycle.response_complete
        super().connection_lost(exc)
        self.guard.waiting.pop(self, None)
        self.guard.dropping.discard(self)
        self.deadline = math.inf
        if in_request and self._task is not None and not self._task.done():
            self.cycle.scope.setdefault(CLIENT_GONE, 499)  # type: ignore[typeddict-item]
            self._task.cancel()  # queued work is dropped; the telemetry records 499

    def data_received(self, data: bytes) -> None:
        if self.phase is LINGER:
            return  # the rest of a refused request: read and dropped
        super().data_received(data)
        if self.phase is HEAD and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self.reject(431, self._too_large, "header_too_large")

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if self.config.reset_contextvars:
            super()._start_asgi_task(cycle, app)
            self._task = None
            return
        task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        self._task = task

    # --- a request's phases -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._enter(HEAD, self.limits.timeout_headers_s)

    def on_headers_complete(self) -> None:
        if self.phase is LINGER:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_header_bytes:
            self.reject(431, self._too_large, "header_too_large")
            return
        super().on_headers_complete()
        self._enter(BODY, self.limits.timeout_body_s)
        if self.guard.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_body(self, body: bytes) -> None:
        if self.phase is not LINGER:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.phase is LINGER:
            return
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:  # answered early (a refusal)
            self._enter(IDLE, self.limits.timeout_keep_alive_s)
            return
        self._enter(APP, None)  # whole, in the app's hands: REQUEST_TIMEOUT_S from here
        self.guard.waiting.pop(self, None)
        if not self.pipeline:
            # Keep reading (the body's last bytes may have paused it): a client that hangs up is
            # only seen by reading, and must cancel its request rather than wait for the answer.
            self.flow.resume_reading()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return  # closing, or a pipelined request is under way
        if self.phase is APP:
            self._enter(IDLE, self.limits.timeout_keep_alive_s)
            self.guard.waiting[self] = None

    # --- ends -------------------------------------------------------------------------------

    def expire(self) -> None:
        """Called by the sweep once the phase's deadline has passed."""
        if self.phase is IDLE:
            self.guard.count("idle_timeout")
            self._close()
        elif self.phase is HEAD:
            self.reject(408, "the request line and headers took too long", "headers_timeout")
        elif self.phase is BODY and self.cycle is not None and self.cycle.response_complete:
            self.guard.count("body_timeout")  # refused already; the rest of its body is late
            self._close()
        elif self.phase is BODY:
            self.reject(408, "the request body took too long", "body_timeout")
        else:
            self._close()

    def evict(self) -> None:
        self.guard.count("evicted")
        self._close()

    def reject(self, status: int, detail: str, reason: str) -> None:
        """Answers `status` at once (an unfinished request with it), then reads and drops what
        else comes for `LINGER_S`, so the client sees the answer, not a reset."""
        self.guard.count(reason)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and self._task is not None:
            cycle.scope.setdefault(CLIENT_GONE, status)  # type: ignore[typeddict-item]
            cycle.disconnected = True  # whatever the app answers now goes nowhere
            self._task.cancel()
        self._enter(LINGER, LINGER_S)
        self.guard.waiting.pop(self, None)
        self.guard.dropping.add(self)
        if self.transport.is_closing():
            return
        body = json.dumps({"detail": detail}).encode()
        head = [STATUS_LINE[status], b"content-type: application/json\r\nconnection: close\r\n"]
        if status == 503:
            head.append(b"retry-after: 1\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        self.transport.write(b"".join([*head, body]))
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self._close()

    def _close(self) -> None:
        self.guard.waiting.pop(self, None)
        self.guard.dropping.add(self)
        self.deadline = math.inf
        if not self.transport.is_closing():
            self.transport.close()

    # --- draining on SIGTERM ----------------------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown, per connection, once the listening sockets are closed."""
        self.guard.drain()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False  # answered, then closed
        elif self.phase is IDLE:
            self._close_when_quiet()
        # A request on its way in (HEAD) is answered with `connection: close`, or times out.

    def _close_when_quiet(self) -> None:
        if self.transport.is_closing() or self.phase is not IDLE:
            return  # gone, or a request has arrived: it is answered, then the connection closed
        if unread_bytes(self.transport):
            self.loop.call_later(QUIET_CHECK_S, self._close_when_quiet)  # read on the next turn
        else:
            self._close()


def unread_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes the kernel holds for this socket that nobody has read yet (FIONREAD)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return 0
