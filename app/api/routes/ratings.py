"""`/users/{user_id}/ratings`: a user's ratings, from the data set and the feedback store.

Reads merge the bundle's ratings (the data set the model was trained on) with the stored ones;
a stored rating replaces the data set's for the same movie. Writes go to the feedback store
only, and are open, or need API_TOKEN when it is set (`write_router`: see `create_app`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError

from app.api.deps import BundleDep, MovieIdPath, ServiceDep, UserIdPath, movie_fields
from app.api.responses import NOT_FOUND, UNAUTHORIZED, UNAVAILABLE
from app.feedback import FeedbackUnavailable
from app.feedback.schema import EPOCH
from app.schemas import (
    RatedMovie,
    RatingBody,
    RatingsBody,
    StoredRating,
    StoredRatingOfMovie,
    StoredRatings,
    UserRatings,
)
from app.served import ServedBundle

router = APIRouter(tags=["ratings"])
write_router = APIRouter(tags=["ratings"])

WRITE_ERRORS = {**UNAUTHORIZED, **UNAVAILABLE}


@router.get(
    "/users/{user_id}/ratings",
    response_model=UserRatings,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="A user's highest-rated movies",
)
async def user_ratings(
    user_id: UserIdPath,
    service: ServiceDep,
    bundle: BundleDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many movies to return")] = 5,
) -> UserRatings:
    """The movies the user rated highest: the data set's ratings and the stored ones together.

    A stored rating replaces the data set's for the same movie. With the feedback database down,
    a user the data set knows gets the data set's ratings (`feedback: "unavailable"`); any other
    user gets 503.
    """
    row = bundle.user_rows.get(user_id)
    try:
        stored = (await service.feedback.ratings_of([user_id]))[user_id]
        feedback = "ok"
    except FeedbackUnavailable:
        if row is None:
            raise
        stored, feedback = [], "unavailable"
    if row is None and not stored:
        raise HTTPException(404, f"unknown user_id {user_id}: no ratings in the data set or stored")
    merged = bundle.merged_ratings(user_id, stored)
    # Best first; among equal ratings, stored ones (newest first) before the data set's.
    best = sorted(merged.items(), key=lambda item: (-item[1][0], -(item[1][1] or EPOCH).timestamp()))[:limit]
    return UserRatings(
        user_id=user_id,
        ratings=[
            RatedMovie(
                **movie_fields(bundle, movie_row),
                rating=stars,
                source="dataset" if rated_at is None else "feedback",
                rated_at=rated_at,
            )
            for movie_row, (stars, rated_at) in best
        ],
        feedback=feedback,
    )


@write_router.put(
    "/users/{user_id}/ratings/{movie_id}",
    response_model=StoredRating,
    responses={**NOT_FOUND, **WRITE_ERRORS},
    summary="Store or replace one rating",
)
async def put_rating(
    user_id: UserIdPath, movie_id: MovieIdPath, body: RatingBody, service: ServiceDep, bundle: BundleDep
) -> StoredRating:
    """Stores the user's rating of a movie, replacing any earlier one; the same rating again
    changes nothing (the row and its `rated_at` stay). A movie the catalogue does not know: 404."""
    if movie_id not in bundle.movie_rows:
        raise HTTPException(404, f"unknown movie_id {movie_id}: not in the catalogue")
    stored = await service.feedback.put(user_id, movie_id, body.rating)
    return StoredRating(
        user_id=user_id, movie_id=stored.movie_id, rating=stored.rating, rated_at=stored.rated_at
    )


@write_router.post(
    "/users/{user_id}/ratings",
    response_model=StoredRatings,
    responses=WRITE_ERRORS,
    summary="Store many ratings at once, all or none",
)
async def post_ratings(
    user_id: UserIdPath, body: RatingsBody, service: ServiceDep, bundle: BundleDep
) -> StoredRatings:
    """Stores 1 to 1,000 ratings of one user in one transaction. A bad item (out of range, an
    unknown movie, a movie listed twice) is named by its index in a 422, and nothing is stored."""
    _check_items(body, bundle)
    stored = await service.feedback.put_many(user_id, [(item.movie_id, item.rating) for item in body.ratings])
    return StoredRatings(
        user_id=user_id,
        ratings=[
            StoredRatingOfMovie(movie_id=s.movie_id, rating=s.rating, rated_at=s.rated_at) for s in stored
        ],
    )


@write_router.delete(
    "/users/{user_id}/ratings/{movie_id}",
    status_code=204,
    response_class=Response,
    responses={**NOT_FOUND, **WRITE_ERRORS},
    summary="Remove a stored rating",
)
async def delete_rating(user_id: UserIdPath, movie_id: MovieIdPath, service: ServiceDep) -> Response:
    """Removes the user's stored rating of a movie (the data set's ratings cannot be removed)."""
    if not await service.feedback.delete(user_id, movie_id):
        raise HTTPException(404, f"no stored rating of movie_id {movie_id} by user_id {user_id}")
    return Response(status_code=204)


def _check_items(body: RatingsBody, bundle: ServedBundle) -> None:
    """422 naming every item whose movie is unknown or listed before."""
    errors = []
    first_at: dict[int, int] = {}
    for index, item in enumerate(body.ratings):
        problem = None
        if item.movie_id not in bundle.movie_rows:
            problem = f"unknown movie_id {item.movie_id}: not in the catalogue"
        elif item.movie_id in first_at:
            problem = f"movie_id {item.movie_id} is listed twice (first at index {first_at[item.movie_id]})"
        first_at.setdefault(item.movie_id, index)
        if problem:
            where = ("body", "ratings", index, "movie_id")
            errors.append({"type": "value_error", "loc": where, "msg": problem})
    if errors:
        raise RequestValidationError(errors)
