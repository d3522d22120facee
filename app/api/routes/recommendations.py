"""`GET /users/{user_id}/recommendations`: a user's top-k movies."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.api.deps import BundleDep, ServiceDep, movie_fields, user_row
from app.api.responses import NOT_FOUND, UNAVAILABLE
from app.schemas import Recommendation, Recommendations
from app.served import Ranked, ServedBundle

router = APIRouter(tags=["recommendations"])


@router.get(
    "/users/{user_id}/recommendations",
    response_model=Recommendations,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="Top-k movies for a user",
)
async def recommendations(
    user_id: int,
    request: Request,
    service: ServiceDep,
    bundle: BundleDep,
    k: Annotated[int, Query(ge=1, le=100, description="How many movies to return")] = 10,
    fallback: Annotated[
        Literal["popular"] | None,
        Query(description="'popular' answers an unknown user with the most popular movies instead of 404"),
    ] = None,
) -> Recommendations:
    """The k movies with the highest predicted rating among those the user has never rated."""
    if fallback == "popular" and user_id not in bundle.user_rows:
        ranked, source = bundle.popular(k), "popular"
    else:
        batched = await service.recommend(bundle, user_row(bundle, user_id), k)
        request.state.batch_size = batched.batch_size
        ranked, source = batched.value, "model"
    return Recommendations(
        user_id=user_id,
        model_version=bundle.version,
        source=source,
        recommendations=_listing(bundle, ranked),
    )


def _listing(bundle: ServedBundle, ranked: Ranked) -> list[Recommendation]:
    return [
        Recommendation(rank=rank, **movie_fields(bundle, int(row)), predicted_rating=round(float(stars), 4))
        for rank, (row, stars) in enumerate(zip(ranked.movie_rows, ranked.stars, strict=True), start=1)
    ]
