"""Operations: the served bundle's metadata and loss plot, liveness, readiness, metrics, and a
manual reload."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import BundleDep, ServiceDep
from app.api.responses import NOT_FOUND, UNAUTHORIZED, UNAVAILABLE
from app.bundle import LOSS_PLOT_FILE
from app.schemas import ServedModel, Status

router = APIRouter(tags=["operations"])
admin_router = APIRouter(tags=["operations"])


@router.get("/model", response_model=ServedModel, summary="The served bundle's metadata")
async def model_metadata(bundle: BundleDep, service: ServiceDep) -> ServedModel:
    """Version, data, split, hyperparameters, evaluation figures and training history, and the
    replica that answered."""
    return ServedModel(**bundle.bundle.metadata.model_dump(), replica=service.settings.replica_name)


@router.get(
    "/model/loss.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "A PNG image"},
        404: {**NOT_FOUND[404], "description": "The served bundle has no loss plot"},
    },
    summary="The served bundle's loss curve",
)
async def loss_plot(bundle: BundleDep) -> Response:
    """Training and validation loss per epoch, as plotted by the training run (`loss.png`)."""
    path = bundle.bundle.path / LOSS_PLOT_FILE
    try:
        image = await asyncio.to_thread(path.read_bytes)
    except OSError:
        raise HTTPException(404, f"the served model {bundle.version} has no loss plot") from None
    return Response(image, media_type="image/png", headers={"Cache-Control": "no-cache"})


@router.get("/healthz", response_model=Status, responses=UNAVAILABLE, summary="Liveness")
async def healthz(service: ServiceDep, response: Response) -> Status:
    """200 while the process can serve; 503 once it cannot recover by itself (a model worker stopped)."""
    if service.problem:
        response.status_code = 503
        return Status(status=service.problem)
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses=UNAVAILABLE, summary="Readiness")
async def readyz(service: ServiceDep, response: Response) -> Status:
    """200 once a bundle is loaded and warm, 503 before (and while shutting down).

    `database` tells whether the feedback database answers; it does not change the status code,
    since reads and recommendations still work from the bundle while it is down (a load balancer
    must not pull every replica because of it).
    """
    database = "ok" if service.feedback.available else "unavailable"
    if service.problem:
        response.status_code = 503
        return Status(status=service.problem, database=database)
    if service.draining:
        response.status_code = 503
        return Status(status="draining", database=database)
    if service.bundle is None:
        response.status_code = 503
        return Status(status="loading", database=database)
    return Status(status="ready", model_version=service.bundle.version, database=database)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@admin_router.post(
    "/admin/reload",
    response_model=dict[str, Any],
    responses=UNAUTHORIZED,
    summary="Load the bundle `current` points to now",
)
async def reload(service: ServiceDep) -> dict[str, Any]:
    """Swaps in a new bundle without dropping requests; needs `Authorization: Bearer ADMIN_TOKEN`.

    Tries again a bundle that was refused, even unchanged; the reason of a refusal is in the log.
    """
    outcome = await service.reload(force=True)
    return {"outcome": outcome, "model_version": service.bundle and service.bundle.version}
