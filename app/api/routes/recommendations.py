"""`GET /users/{user_id}/recommendations`: a user's top-k movies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.responses import Response

from app.api.deps import BundleDep, ServiceDep, UserIdPath, movie_fields
from app.api.json import json_response
from app.api.responses import NOT_FOUND, UNAVAILABLE
from app.feedback import FeedbackUnavailable
from app.inference import RankBy
from app.schemas import Recommendations
from app.scoring import MAX_K
from app.served import Ranked, ServedBundle

router = APIRouter(tags=["recommendations"])


@router.get(
    "/users/{user_id}/recommendations",
    response_model=Recommendations,
    responses={**NOT_FOUND, **UNAVAILABLE},
    summary="Top-k movies for a user",
)
async def recommendations(
    user_id: UserIdPath,
    request: Request,
    service: ServiceDep,
    bundle: BundleDep,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many movies to return")] = 10,
    rank_by: Annotated[
        RankBy,
        Query(description="'ranking' (the model's ranking score) or 'rating' (highest predicted rating)"),
    ] = "ranking",
    explain: Annotated[
        bool, Query(description="Add to each movie the user's liked movie it is closest to (`because`)")
    ] = False,
    fallback: Annotated[
        Literal["popular"] | None,
        Query(description="'popular' answers an unknown user with the most popular movies instead of 404"),
    ] = None,
) -> Response:
    """The k best movies among those the user has never rated, in the data set or since.

    A user the model was not trained on but who stored ratings through this API is scored
    through vectors fitted to those ratings (`source: fold-in`).
    """
    batched = await service.recommend(bundle, user_id, k, rank_by, explain)
    request.state.batch_size = batched.batch_size
    result = batched.value
    if result.ranked is not None:
        ranked, source = result.ranked, result.source
    elif fallback == "popular":
        ranked, source = bundle.popular(k), "popular"
    elif result.source == "unavailable":
        raise FeedbackUnavailable(f"user_id {user_id} is not in the model, and the feedback database is down")
    else:
        raise HTTPException(404, f"unknown user_id {user_id}: no ratings in the data set and none stored")
    listing = _listing(bundle, ranked)
    return json_response(
        {"user_id": user_id, "model_version": bundle.version, "source": source, "recommendations": listing}
    )


def _listing(bundle: ServedBundle, ranked: Ranked) -> list[dict[str, Any]]:
    """The `Recommendation` items of a ranked list, as plain values (see `app.api.json`)."""
    because = ranked.because or [None] * len(ranked.movie_rows)
    items = zip(
        ranked.movie_rows.tolist(), ranked.stars.tolist(), ranked.scores.tolist(), because, strict=True
    )
    return [
        {
            "rank": rank,
            **movie_fields(bundle, row),
            "predicted_rating": round(stars, 4),
            "score": round(score, 6),
            "because": None if liked is None else _because(bundle, liked),
        }
        for rank, (row, stars, score, liked) in enumerate(items, start=1)
    ]


def _because(bundle: ServedBundle, row: int) -> dict[str, Any]:
    return {"movie_id": bundle.encoders.movies[row], "title": bundle.catalogue.titles[row]}
