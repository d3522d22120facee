"""Serving the app with uvicorn: the configuration, the listening socket, and a draining shutdown.

`make_config` gives uvicorn everything that must hold in any process serving the app: the guarded
protocol (`app.protocol`) with its limits, the JSON log configuration, keep-alive and grace
timeouts. It is all in the `Config`, which uvicorn's multiprocess supervisor hands to each worker:

    config = make_config(settings, "app.main:create_worker_app", factory=True, workers=2)
    Multiprocess(config, sockets=[listen(settings)]).run()

(`serve_workers` does that for `WORKERS`.)

`DrainingServer` adds what only the process that owns the signal can do: `/readyz` turns 503 the
moment SIGTERM arrives, and connections the kernel has already accepted on the listening socket
are taken in (and answered) before uvicorn closes it, rather than reset. (uvicorn 0.54's
supervisor builds a plain `uvicorn.Server` in each worker; there, readiness turns 503 when the
shutdown reaches the connections, a tenth of a second later, through `GuardedProtocol.shutdown`.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import resource
import socket
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess

from app import logs
from app.protocol import ConnectionLimits, GuardedProtocol
from app.settings import Settings

FD_RESERVE = 256  # descriptors kept beyond MAX_CONNECTIONS: bundle files, the database, logs
MAX_PENDING = 4096  # at most this many connections already queued are taken in on SIGTERM


class ServerConfig(uvicorn.Config):
    """uvicorn's `Config` with the connection limits `GuardedProtocol` reads from it."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(app, **options)
        self.limits = limits


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        max_connections=settings.max_connections,
        max_header_bytes=settings.max_header_bytes,
        timeout_keep_alive_s=settings.timeout_keep_alive_s,
        timeout_headers_s=settings.timeout_headers_s,
        timeout_body_s=settings.timeout_body_s,
    )


def make_config(settings: Settings, app: Any, **options: Any) -> ServerConfig:
    """The uvicorn configuration of a server process; `options` go to `uvicorn.Config` as they are."""
    grace = settings.shutdown_grace_s
    return ServerConfig(
        app,
        limits=connection_limits(settings),
        host=settings.host,
        port=settings.port,
        http=GuardedProtocol,
        ws="none",
        log_level=settings.log_level,
        log_config=logs.uvicorn_log_config(settings.log_level),
        access_log=False,
        timeout_keep_alive=settings.timeout_keep_alive_s,
        # What is left of the grace after waiting for requests goes to stopping the service.
        timeout_graceful_shutdown=max(grace - min(1.0, grace / 5), 0),
        **options,
    )


def listen(settings: Settings, backlog: int = 2048) -> socket.socket:
    """The listening socket, bound here so that a failure is one reason, not a traceback."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.create_server((settings.host.strip("[]"), settings.port), family=family, backlog=backlog)
    sock.set_inheritable(True)  # for worker processes
    return sock


def raise_descriptor_limit(settings: Settings) -> Settings:
    """Makes room for MAX_CONNECTIONS sockets: raises the soft `ulimit -n` up to the hard one, and
    lowers MAX_CONNECTIONS, saying so, if even that is too low."""
    needed = settings.max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return settings
    lowered = max(soft - FD_RESERVE, 16)
    logs.log(
        "MAX_CONNECTIONS lowered", max_connections=lowered, asked=settings.max_connections, ulimit_n=soft
    )
    return settings.model_copy(update={"max_connections": lowered})


class DrainingServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Any) -> None:
        lifespan = getattr(self, "lifespan", None)
        service = lifespan.state.get("service") if lifespan is not None else None
        if service is not None:
            service.begin_draining()  # /readyz answers 503 from now on
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._take_in_pending(sockets or [])
        await super().shutdown(sockets)

    async def _take_in_pending(self, listeners: list[socket.socket]) -> None:
        """Accepts the connections already queued on the listening sockets, for uvicorn to answer
        what they send: closing a listening socket resets those, requests included. (A busy loop
        takes a queue of connections in over many turns, each a long one: here all are taken at
        once, then handed to the loop together.)"""
        accepted = []
        for listener in listeners:
            while len(accepted) < MAX_PENDING:
                try:
                    connection, _ = listener.accept()
                except OSError:  # BlockingIOError: none left
                    break
                connection.setblocking(False)
                accepted.append(connection)
        loop = asyncio.get_running_loop()
        protocol = functools.partial(
            self.config.http_protocol_class,
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        await asyncio.gather(*(loop.connect_accepted_socket(protocol, c) for c in accepted))


def serve(settings: Settings, app: Any) -> int:
    """Serves `app` until SIGTERM or SIGINT; returns the exit status."""
    settings = raise_descriptor_limit(settings)
    sock = _listening(settings)
    if sock is None:
        return 2
    server = DrainingServer(make_config(settings, app))
    server.run(sockets=[sock])
    return 0 if server.started else 2


def serve_workers(settings: Settings) -> int:
    """Serves `WORKERS` processes on one listening socket under uvicorn's supervisor, which restarts
    a worker that dies and stops everything if one cannot start; returns the exit status."""
    settings = raise_descriptor_limit(settings)
    sock = _listening(settings, workers=settings.workers)
    if sock is None:
        return 2
    config = make_config(settings, "app.main:create_worker_app", factory=True, workers=settings.workers)
    supervisor = Multiprocess(config, sockets=[sock])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        logs.log("cannot serve", logging.ERROR, reason="a worker could not start: its reason is logged above")
        return 2
    return 0


def _listening(settings: Settings, **details: Any) -> socket.socket | None:
    try:
        sock = listen(settings)
    except OSError as error:
        reason = f"cannot listen on {settings.host}:{settings.port} ({error.strerror or error})"
        logs.log("cannot serve", logging.ERROR, reason=reason)
        return None
    address = f"http://{settings.host}:{settings.port}"
    logs.log("listening", address=address, **details, **dataclasses.asdict(connection_limits(settings)))
    return sock
