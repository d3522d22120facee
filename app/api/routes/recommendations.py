"""`GET /users/{user_id}/recommendations`: a user's top-k movies.

The service's hottest route. FastAPI's parameter machinery (dependencies solved, each query
parameter validated by pydantic) costs more per request than the route's own work once scoring is
batched, so `UsualRoute` answers the usual request, `?k=N` or no query at all with an id in plain
digits, by calling the same function with those values directly. Anything else (another parameter,
a value out of range, an odd spelling) goes through FastAPI as declared, which accepts it or says
what is wrong; the OpenAPI page is the declared one either way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from app.api.deps import BundleDep, ServiceDep, UserIdPath, movie_fields, served_bundle
from app.api.json import json_response
from app.api.responses import NOT_FOUND, UNAVAILABLE
from app.feedback import FeedbackUnavailable
from app.feedback.schema import MAX_ID
from app.inference import RankBy
from app.schemas import Recommendations
from app.scoring import MAX_K
from app.served import Ranked, ServedBundle

K_DEFAULT = 10
USUAL_QUERY = re.compile(rb"(?:k=([1-9][0-9]{0,2}))?")
USUAL_USER_ID = re.compile(r"[1-9][0-9]{0,17}")


class UsualRoute(APIRoute):
    """Answers `?k=N` (or no query) for an id in plain digits without FastAPI's parameter
    handling, with exactly the values FastAPI would have passed; every other request as declared."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handle(request: Request) -> Response:
            usual = _usual_values(request)
            if usual is None:
                return await declared(request)
            user_id, k = usual
            bundle, service = await served_bundle(request), request.app.state.service
            return await recommendations(user_id, request, service, bundle, k)

        return handle


def _usual_values(request: Request) -> tuple[int, int] | None:
    """(user_id, k) of a usual request, or None for one FastAPI must read."""
    query = USUAL_QUERY.fullmatch(request.scope["query_string"])
    user_id = request.path_params.get("user_id", "")
    if query is None or not USUAL_USER_ID.fullmatch(user_id):
        return None
    k = int(query[1]) if query[1] else K_DEFAULT
    return (int(user_id), k) if k <= MAX_K and int(user_id) <= MAX_ID else None


router = APIRouter(tags=["recommendations"], route_class=UsualRoute)


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
    k: Annotated[int, Query(ge=1, le=MAX_K, description="How many movies to return")] = K_DEFAULT,
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
