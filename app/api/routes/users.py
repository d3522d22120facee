"""`GET /users/{user_id}/ratings`: what a user rated."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query

from app.api.deps import BundleDep, movie_fields, user_row
from app.api.responses import NOT_FOUND
from app.schemas import RatedMovie, UserRatings

router = APIRouter(tags=["data"])


@router.get(
    "/users/{user_id}/ratings",
    response_model=UserRatings,
    responses=NOT_FOUND,
    summary="A user's highest-rated movies",
)
async def user_ratings(
    user_id: int,
    bundle: BundleDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many movies to return")] = 5,
) -> UserRatings:
    """The movies the user rated highest, as the seed notebook shows beside its recommendations."""
    movies, stars = bundle.ratings.of(user_row(bundle, user_id))
    best = np.argsort(-stars, kind="stable")[:limit]
    return UserRatings(
        user_id=user_id,
        ratings=[RatedMovie(**movie_fields(bundle, int(movies[i])), rating=float(stars[i])) for i in best],
    )
