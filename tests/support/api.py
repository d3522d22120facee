"""Reaching the app in process, and what every refused request must look like, whichever route
refused it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

FORBIDDEN_IN_ERRORS = ("Traceback", 'File "', "/site-packages/", "/work/", "/tmp/")


def assert_clean_4xx(response: httpx.Response) -> None:
    """A 4xx status, a JSON `detail`, and nothing of the server's insides (tracebacks, paths)."""
    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()
    assert not any(leak in response.text for leak in FORBIDDEN_IN_ERRORS), response.text


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """`app` with its lifespan run (the service started, its bundle loaded), and a client that
    reaches it in process, without a socket; both end with the block."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
