"""The HTTP routes. Each takes the served model once, so a swap mid-request cannot mix two."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.bundle import Metadata
from app.model import Ranked, ServedModel
from app.schemas import (
    ErrorMessage,
    Movie,
    Pair,
    PredictBody,
    Prediction,
    Predictions,
    RatedMovie,
    Recommendation,
    Recommendations,
    Status,
    UserRatings,
)
from app.service import Service

router = APIRouter()
NOT_FOUND = {404: {"model": ErrorMessage, "description": "Unknown id"}}
UNAVAILABLE = {503: {"model": ErrorMessage, "description": "Not ready, or overloaded: retry later"}}


async def get_service(request: Request) -> Service:
    return request.app.state.service


async def served_model(request: Request, service: Annotated[Service, Depends(get_service)]) -> ServedModel:
    """The model in service when the request arrived; 503 while none is loaded."""
    model = service.model
    if model is None:
        raise HTTPException(503, "no model is loaded yet; retry shortly")
    request.state.model_version = model.version
    return model


ServiceDep = Annotated[Service, Depends(get_service)]
ModelDep = Annotated[ServedModel, Depends(served_model)]


def user_row(model: ServedModel, user_id: int) -> int:
    row = model.user_rows.get(user_id)
    if row is None:
        raise HTTPException(404, f"unknown user_id {user_id}: no ratings for this user in the data set")
    return row


@router.get(
    "/users/{user_id}/recommendations",
    response_model=Recommendations,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="Top-k movies for a user",
    tags=["recommendations"],
)
async def recommendations(
    user_id: int,
    request: Request,
    service: ServiceDep,
    model: ModelDep,
    k: Annotated[int, Query(ge=1, le=100, description="How many movies to return")] = 10,
    fallback: Annotated[
        Literal["popular"] | None,
        Query(description="'popular' answers an unknown user with the most popular movies instead of 404"),
    ] = None,
) -> Recommendations:
    """The k movies with the highest predicted rating among those the user has never rated."""
    if fallback == "popular" and user_id not in model.user_rows:
        ranked, source = model.popular(k), "popular"
    else:
        batched = await service.recommend(model, user_row(model, user_id), k)
        request.state.batch_size = batched.batch_size
        ranked, source = batched.value, "model"
    return Recommendations(
        user_id=user_id,
        model_version=model.version,
        source=source,
        recommendations=_listing(model, ranked),
    )


@router.post(
    "/predict",
    response_model=Predictions,
    responses=UNAVAILABLE,
    summary="Predicted ratings for user-movie pairs",
    tags=["recommendations"],
)
async def predict(body: PredictBody, request: Request, service: ServiceDep, model: ModelDep) -> Predictions:
    """Predicted stars for each pair, in request order; an unknown id gives null and an error."""
    cap = service.settings.predict_max_pairs
    if len(body.pairs) > cap:
        raise RequestValidationError(
            [
                {
                    "type": "too_long",
                    "loc": ("body", "pairs"),
                    "msg": f"at most {cap} pairs per request",
                    "input": None,
                }
            ]
        )
    rows = [(model.user_rows.get(p.user_id), model.movie_rows.get(p.movie_id)) for p in body.pairs]
    known = [i for i, (u, m) in enumerate(rows) if u is not None and m is not None]
    stars: np.ndarray = np.zeros(0)
    if known:
        batched = await service.predict(model, np.array([rows[i] for i in known], dtype=np.int32))
        request.state.batch_size = batched.batch_size
        stars = batched.value
    by_position = dict(zip(known, stars.tolist(), strict=True))
    return Predictions(
        model_version=model.version,
        predictions=[_prediction(pair, by_position.get(i), rows[i]) for i, pair in enumerate(body.pairs)],
    )


@router.get(
    "/users/{user_id}/ratings",
    response_model=UserRatings,
    responses=NOT_FOUND,
    summary="A user's highest-rated movies",
    tags=["data"],
)
async def user_ratings(
    user_id: int,
    model: ModelDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many movies to return")] = 5,
) -> UserRatings:
    """The movies the user rated highest, as the seed notebook shows beside its recommendations."""
    movies, stars = model.ratings.of(user_row(model, user_id))
    best = np.argsort(-stars, kind="stable")[:limit]
    return UserRatings(
        user_id=user_id,
        ratings=[RatedMovie(**_movie_fields(model, int(movies[i])), rating=float(stars[i])) for i in best],
    )


@router.get("/movies/{movie_id}", response_model=Movie, responses=NOT_FOUND, summary="A movie", tags=["data"])
async def movie(movie_id: int, model: ModelDep) -> Movie:
    """Title, genres, and how often and how well the movie was rated."""
    row = model.movie_rows.get(movie_id)
    if row is None:
        raise HTTPException(404, f"unknown movie_id {movie_id}: no ratings for this movie in the data set")
    mean = model.mean_ratings[row]
    return Movie(
        **_movie_fields(model, row),
        ratings_count=int(model.rating_counts[row]),
        mean_rating=None if np.isnan(mean) else round(float(mean), 4),
    )


@router.get("/model", response_model=Metadata, summary="The served bundle's metadata", tags=["operations"])
async def model_metadata(model: ModelDep) -> Metadata:
    """Version, data, split, hyperparameters, evaluation figures and training history."""
    return model.bundle.metadata


@router.get("/healthz", response_model=Status, summary="Liveness", tags=["operations"])
async def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses=UNAVAILABLE, summary="Readiness", tags=["operations"])
async def readyz(service: ServiceDep, response: Response) -> Status:
    """200 once a bundle is loaded and warm, 503 before (and while shutting down)."""
    if service.model is None:
        response.status_code = 503
        return Status(status="loading")
    return Status(status="ready", model_version=service.model.version)


@router.get("/metrics", summary="Prometheus metrics", tags=["operations"], response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)


admin_router = APIRouter()


@admin_router.post(
    "/admin/reload",
    response_model=dict[str, Any],
    responses={401: {"model": ErrorMessage}},
    summary="Load the bundle `current` points to now",
    tags=["operations"],
)
async def reload(
    service: ServiceDep, authorization: Annotated[str | None, Header()] = None
) -> dict[str, Any]:
    """Swaps in a new bundle without dropping requests; needs `Authorization: Bearer ADMIN_TOKEN`."""
    token = service.settings.admin_token
    offered = (authorization or "").removeprefix("Bearer ").encode()
    if token is None or not secrets.compare_digest(offered, token.get_secret_value().encode()):
        raise HTTPException(401, "send the ADMIN_TOKEN as 'Authorization: Bearer <token>'")
    outcome = await service.reload()
    return {"outcome": outcome, "model_version": service.model and service.model.version}


def _movie_fields(model: ServedModel, row: int) -> dict[str, Any]:
    return {
        "movie_id": model.encoders.movies[row],
        "title": model.catalogue.titles[row],
        "genres": model.catalogue.genres[row],
    }


def _listing(model: ServedModel, ranked: Ranked) -> list[Recommendation]:
    return [
        Recommendation(rank=rank, **_movie_fields(model, int(row)), predicted_rating=round(float(stars), 4))
        for rank, (row, stars) in enumerate(zip(ranked.movie_rows, ranked.stars, strict=True), start=1)
    ]


def _prediction(pair: Pair, stars: float | None, rows: tuple[int | None, int | None]) -> Prediction:
    if stars is not None:
        return Prediction(
            user_id=pair.user_id, movie_id=pair.movie_id, predicted_rating=round(stars, 4), error=None
        )
    unknown = [
        f"unknown {name} {value}"
        for name, value, row in (("user_id", pair.user_id, rows[0]), ("movie_id", pair.movie_id, rows[1]))
        if row is None
    ]
    return Prediction(
        user_id=pair.user_id, movie_id=pair.movie_id, predicted_rating=None, error="; ".join(unknown)
    )
