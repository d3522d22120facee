"""Exception handlers: every error is JSON with a `detail` that says what was wrong."""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from app import logs
from app.api.routes.predictions import InvalidBody
from app.batcher import Overloaded
from app.feedback import FeedbackUnavailable


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(InvalidBody, _invalid_body)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(FeedbackUnavailable, _feedback_unavailable)
    app.add_exception_handler(Exception, _internal_error)


async def _invalid_request(request: Request, error: Exception) -> JSONResponse:
    """422 with where and what, but not the offending input: it may be huge, or not JSON (inf)."""
    assert isinstance(error, RequestValidationError)
    detail = [{key: e[key] for key in ("type", "loc", "msg")} for e in error.errors()]
    return JSONResponse({"detail": detail}, 422)


async def _invalid_body(request: Request, error: Exception) -> JSONResponse:
    """As `_invalid_request`, for a body validated outside FastAPI (`/predict`'s)."""
    assert isinstance(error, InvalidBody)
    return JSONResponse({"detail": error.errors}, 422)


async def _overloaded(request: Request, error: Exception) -> JSONResponse:
    request.app.state.service.metrics.rejected.inc()
    return JSONResponse({"detail": f"overloaded ({error}); retry shortly"}, 503, headers={"Retry-After": "1"})


async def _feedback_unavailable(request: Request, error: Exception) -> JSONResponse:
    """503 for what needs the feedback database while it is down; the reason is in the log, not here."""
    retry = max(1, math.ceil(request.app.state.service.feedback.check_interval_s))
    detail = {"detail": "the feedback database is unavailable; retry shortly"}
    return JSONResponse(detail, 503, headers={"Retry-After": str(retry)})


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    """Never a traceback or a path to the client: the log line has the details."""
    logs.logger.exception("unhandled error", extra={"fields": {"path": request.url.path}})
    return JSONResponse({"detail": "internal error; the server log has the details"}, 500)
