"""Dependencies the routes share: the service, and the bundle in service when a request arrived.

Each route takes the served bundle once, through `BundleDep`, so a live swap mid-request cannot
mix two bundles in one answer.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from pydantic import BeforeValidator

from app.feedback.schema import MAX_ID
from app.served import ServedBundle
from app.service import Service


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def served_bundle(request: Request) -> ServedBundle:
    """The bundle in service when the request arrived; 503 while none is loaded. (It reads the
    service itself rather than through `get_service`: a sub-dependency costs every request.)"""
    bundle = request.app.state.service.bundle
    if bundle is None:
        raise HTTPException(503, "no model is loaded yet; retry shortly")
    request.state.model_version = bundle.version
    return bundle


ServiceDep = Annotated[Service, Depends(get_service)]
BundleDep = Annotated[ServedBundle, Depends(served_bundle)]

DIGITS = re.compile(r"[0-9]+")


def _digits_only(value: object) -> object:
    """Ids in paths are plain decimal digits: not `1_0`, `+1`, `1.0` or `true`, which a lax
    integer parser would take for 10 or 1."""
    if isinstance(value, str) and not DIGITS.fullmatch(value):
        raise ValueError("an id is a whole number written in plain digits")
    return value


UserIdPath = Annotated[
    int,
    Path(ge=1, le=MAX_ID, description="A user id: MovieLens's, or any positive one given to ratings"),
    BeforeValidator(_digits_only),
]
MovieIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="A movie id"), BeforeValidator(_digits_only)]


def movie_fields(bundle: ServedBundle, row: int) -> dict[str, object]:
    """Id, title and genres of a movie row, as every response that lists movies shows them."""
    return {
        "movie_id": bundle.encoders.movies[row],
        "title": bundle.catalogue.titles[row],
        "genres": bundle.catalogue.genres[row],
    }
