"""`GET /users/{user_id}/recommendations`: a user's top-k movies."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from app.api.deps import BundleDep, ServiceDep, UserIdPath, movie_fields
from app.api.responses import NOT_FOUND, UNAVAILABLE
from app.feedback import FeedbackUnavailable
from app.inference import RankBy
from app.schemas import Because, Recommendation, Recommendations
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
    k: Annotated[int, Query(ge=1, le=100, description="How many movies to return")] = 10,
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
) -> Recommendations:
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
    return Recommendations(
        user_id=user_id, model_version=bundle.version, source=source, recommendations=_listing(bundle, ranked)
    )


def _listing(bundle: ServedBundle, ranked: Ranked) -> list[Recommendation]:
    because = ranked.because or [None] * len(ranked.movie_rows)
    return [
        Recommendation(
            rank=rank,
            **movie_fields(bundle, int(row)),
            predicted_rating=round(float(stars), 4),
            score=round(float(score), 6),
            because=None if liked is None else Because(**movie_fields(bundle, liked)),
        )
        for rank, (row, stars, score, liked) in enumerate(
            zip(ranked.movie_rows, ranked.stars, ranked.scores, because, strict=True), start=1
        )
    ]
