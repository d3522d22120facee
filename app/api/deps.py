"""Dependencies the routes share: the service, and the bundle in service when a request arrived.

Each route takes the served bundle once, through `BundleDep`, so a live swap mid-request cannot
mix two bundles in one answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from app.served import ServedBundle
from app.service import Service


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def served_bundle(request: Request, service: Annotated[Service, Depends(get_service)]) -> ServedBundle:
    """The bundle in service when the request arrived; 503 while none is loaded."""
    bundle = service.bundle
    if bundle is None:
        raise HTTPException(503, "no model is loaded yet; retry shortly")
    request.state.model_version = bundle.version
    return bundle


ServiceDep = Annotated[Service, Depends(get_service)]
BundleDep = Annotated[ServedBundle, Depends(served_bundle)]


def user_row(bundle: ServedBundle, user_id: int) -> int:
    """The user's row in the bundle, or 404 naming the id."""
    row = bundle.user_rows.get(user_id)
    if row is None:
        raise HTTPException(404, f"unknown user_id {user_id}: no ratings for this user in the data set")
    return row


def movie_fields(bundle: ServedBundle, row: int) -> dict[str, object]:
    """Id, title and genres of a movie row, as every response that lists movies shows them."""
    return {
        "movie_id": bundle.encoders.movies[row],
        "title": bundle.catalogue.titles[row],
        "genres": bundle.catalogue.genres[row],
    }
