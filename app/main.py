"""The FastAPI application: a lifespan that loads the bundle once, the routes, and error handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from app import logs
from app.api import admin_router, router
from app.batcher import Overloaded
from app.metrics import create_metrics
from app.middleware import RequestTelemetry
from app.model import ServedModel
from app.service import Service
from app.settings import Settings

DESCRIPTION = """
Movie recommendations from a matrix-factorisation model trained on MovieLens ratings.

* `GET /users/{user_id}/recommendations?k=10`: the best movies a user has not rated.
* `POST /predict`: predicted stars for user-movie pairs.

Ratings are on MovieLens's scale of 0.5 to 5 stars. Errors are JSON with a `detail`.
"""


def create_app(settings: Settings | None = None, preloaded: ServedModel | None = None) -> FastAPI:
    """Builds the app; `preloaded` skips loading when the caller has loaded the bundle already."""
    settings = settings or Settings()
    logs.configure(settings.log_level)
    metrics = create_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = Service(settings, metrics)
        app.state.service = service
        await service.start(preloaded)
        try:
            yield
        finally:
            await service.stop()

    app = FastAPIOffline(
        title="Movie recommender",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(router)
    if settings.admin_token is not None:
        app.include_router(admin_router)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"])
    app.add_middleware(RequestTelemetry, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(Exception, _internal_error)
    return app


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    """422 with where and what, but not the offending input: it may be huge, or not JSON (inf)."""
    assert isinstance(error, RequestValidationError)
    detail = [{key: e[key] for key in ("type", "loc", "msg")} for e in error.errors()]
    return JSONResponse({"detail": detail}, 422)


async def _overloaded(request: Request, error: Exception) -> JSONResponse:
    request.app.state.service.metrics.rejected.inc()
    return JSONResponse({"detail": f"overloaded ({error}); retry shortly"}, 503, headers={"Retry-After": "1"})


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    """Never a traceback or a path to the client: the log line has the details."""
    logs.logger.exception("unhandled error", extra={"fields": {"path": request.url.path}})
    return JSONResponse({"detail": "internal error; the server log has the details"}, 500)
