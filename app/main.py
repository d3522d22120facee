"""The FastAPI application, assembled: lifespan, routes, middleware and error handlers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app import logs, web
from app.api import errors
from app.api.auth import require_bearer
from app.api.routes import public_routers
from app.api.routes.operations import admin_router
from app.api.routes.ratings import write_router
from app.metrics import create_metrics
from app.request_limits import RequestLimits
from app.served import ServedBundle
from app.service import Service
from app.settings import Settings
from app.telemetry import RequestTelemetry
from app.threads import limit_compute_threads

DESCRIPTION = """
Movie recommendations from a matrix-factorisation model trained on MovieLens ratings.

* `GET /users/{user_id}/recommendations?k=10`: the best movies a user has not rated.
* `POST /predict`: predicted stars for user-movie pairs.
* `PUT`, `POST`, `DELETE /users/{user_id}/ratings...`: store ratings; the next model learns from them.
* `GET /movies?query=...`: find movies by title.

The page at `/` is built on these routes alone: find movies, rate them, see recommendations change.

Ratings are on MovieLens's scale of 0.5 to 5 stars. Errors are JSON with a `detail`.
"""


def create_worker_app() -> FastAPI:
    """One of `WORKERS` processes, built by uvicorn's supervisor in a fresh interpreter: settings
    from the environment, its own bundle (loaded by the lifespan), and its process id in its
    replica name, so that `x-replica` and `GET /model` tell the workers apart."""
    settings = Settings()
    limit_compute_threads(settings.compute_threads)
    return create_app(settings.model_copy(update={"replica_name": f"{settings.replica_name}-{os.getpid()}"}))


def create_app(settings: Settings | None = None, preloaded: ServedBundle | None = None) -> FastAPI:
    """Builds the app; `preloaded` skips loading when the caller has loaded the bundle already.

    The app hands `preloaded` over to its service and keeps no reference: a bundle held anywhere
    but in the service outlives its swap (the first one stayed for the process's life, 40 MB at
    ml-latest-small's size)."""
    settings = settings or Settings()
    logs.configure(settings.log_level)
    metrics = create_metrics()
    handover = [preloaded] if preloaded is not None else []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Service]]:
        service = Service(settings, metrics)
        app.state.service = service
        await service.start(handover.pop() if handover else None)
        try:
            yield {"service": service}  # lifespan state: uvicorn hands it to app.protocol too
        finally:
            await service.stop()

    app = FastAPIOffline(
        title="Movie recommender", version="0.1.0", description=DESCRIPTION, lifespan=lifespan
    )
    for router in public_routers:
        app.include_router(router)
    app.include_router(web.router)
    writes = [] if settings.api_token is None else [require_bearer(settings.api_token, "API_TOKEN")]
    app.include_router(write_router, dependencies=writes)
    if settings.admin_token is not None:
        app.include_router(admin_router, dependencies=[require_bearer(settings.admin_token, "ADMIN_TOKEN")])
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["authorization", "content-type"],
        )
    app.add_middleware(
        RequestLimits,
        max_body_bytes=settings.max_body_bytes,
        max_inflight_body_bytes=settings.max_inflight_body_bytes,
        request_timeout_s=settings.request_timeout_s,
        on_shed=lambda reason: metrics.shed.labels(reason).inc(),
    )
    app.add_middleware(RequestTelemetry, metrics=metrics, replica=settings.replica_name)
    errors.install(app)
    return app
