"""`POST /predict`: predicted stars for user-movie pairs.

A request of 10,000 pairs is about 350 kB of JSON: parsed, looked up and answered on the event
loop it would hold it for tens of milliseconds, and a few dozen of them would stall every other
request. So a large request's CPU work (parsing and validating the body, looking the ids up,
building the answer) runs on the service's worker threads (`Service.off_loop`: one to read
requests in, one to answer them), one request at a time each; a small one (the usual case)
stays inline, where a thread hop would cost more than the work.

Even off the loop, that work holds the interpreter lock, so it is kept small: the usual body is
read by orjson into two lists of ids (`PairIds`, about 2 ms for 10,000 pairs), not into a pydantic
model per pair (about 19 ms, most of it building the objects); anything else (a whole float as an
id, a missing key, bad JSON) goes to pydantic, which accepts or refuses it and says why.
The route declares `PredictBody` and `Predictions` as usual, so the OpenAPI page is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any, overload

import numpy as np
import orjson
import pydantic_core
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from app.api.deps import BundleDep, ServiceDep
from app.api.responses import UNAVAILABLE
from app.schemas import Pair, PredictBody, Predictions
from app.served import ServedBundle

LARGE_BODY_BYTES = 32_768  # about 1,000 pairs: parsed inline below, on the parse thread above
LARGE_PAIRS = 1_000
PAIR_KEYS = frozenset(Pair.model_fields)


class InvalidBody(HTTPException):
    """A body that is not a `PredictBody`: 422 with pydantic's errors, as `RequestValidationError`.

    An `HTTPException`, because FastAPI turns anything else raised while reading a body into 400.
    """

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(422, "invalid body")
        self.errors = errors


class PredictBodyRequest(Request):
    """FastAPI takes a JSON body from `Request.json()`: here that is the validated `PredictBody`,
    parsed on the parse thread when large, which FastAPI then accepts as it is."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            service = self.app.state.service
            # Every pair names "movie_id" once: a body with more than the cap is refused before
            # tens of thousands of objects are built from it only to be thrown away.
            if body.count(b'"movie_id"') > service.settings.predict_max_pairs:
                raise too_many_pairs(service.settings.predict_max_pairs)
            work = partial(parse_predict_body, body)
            self._json = await service.off_loop(work, heavy=len(body) > LARGE_BODY_BYTES)
        return self._json


class PredictRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_off_loop(request: Request) -> Response:
            return await handle(PredictBodyRequest(request.scope, request.receive))

        return handle_off_loop


router = APIRouter(tags=["recommendations"], route_class=PredictRoute)


@router.post(
    "/predict",
    response_model=Predictions,
    responses=UNAVAILABLE,
    summary="Predicted ratings for user-movie pairs",
)
async def predict(body: PredictBody, request: Request, service: ServiceDep, bundle: BundleDep) -> Response:
    """Predicted stars for each pair, in request order; an unknown id gives null and an error."""
    cap = service.settings.predict_max_pairs
    pairs = PairIds.of(body.pairs)
    if len(pairs) > cap:
        raise too_many_pairs(cap)
    heavy = len(pairs) > LARGE_PAIRS
    rows, known = await service.off_loop(partial(look_up, bundle, pairs), heavy=heavy)
    stars: np.ndarray = np.zeros(0)
    if known:
        batched = await service.predict(bundle, np.array([rows[i] for i in known], dtype=np.int32))
        request.state.batch_size = batched.batch_size
        stars = batched.value
    answer = partial(answer_json, bundle.version, pairs, rows, known, stars)
    return Response(await service.off_loop(answer, heavy, "answer"), media_type="application/json")


def too_many_pairs(cap: int) -> InvalidBody:
    return InvalidBody(
        [{"type": "too_long", "loc": ("body", "pairs"), "msg": f"at most {cap} pairs per request"}]
    )


class PairIds(Sequence[Pair]):
    """A body's pairs as two lists of ids, which is all the route needs of them; indexing gives a
    `Pair`, so it stands where `PredictBody.pairs` is expected."""

    def __init__(self, users: list[int], movies: list[int]) -> None:
        self.users, self.movies = users, movies

    @classmethod
    def of(cls, pairs: Sequence[Pair]) -> PairIds:
        if isinstance(pairs, PairIds):
            return pairs
        return cls([p.user_id for p in pairs], [p.movie_id for p in pairs])

    def __len__(self) -> int:
        return len(self.users)

    @overload
    def __getitem__(self, index: int) -> Pair: ...
    @overload
    def __getitem__(self, index: slice) -> list[Pair]: ...
    def __getitem__(self, index: int | slice) -> Pair | list[Pair]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Pair.model_construct(user_id=self.users[index], movie_id=self.movies[index])


def parse_predict_body(body: bytes) -> PredictBody:
    """The body as a `PredictBody` whose pairs are `PairIds`: read by orjson when it has the usual
    shape (JSON integers as ids, no other keys), else validated by pydantic, which refuses it with
    every error named or accepts what JSON Schema allows (`7.0` as an id)."""
    pairs = _usual_pairs(body)
    if pairs is None:
        try:
            pairs = PairIds.of(PredictBody.model_validate_json(body).pairs)
        except ValidationError as error:
            raise InvalidBody(
                [{"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]} for e in error.errors()]
            ) from None
    return PredictBody.model_construct(pairs=pairs)


def _usual_pairs(body: bytes) -> PairIds | None:
    """`{"pairs": [{"user_id": int, "movie_id": int}, ...]}` (at least one pair) as `PairIds`, or
    None for any other body. The checks are exact types, so `true` or `"7"` is never an id here."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict or document.keys() != {"pairs"}:
        return None
    pairs = document["pairs"]
    if type(pairs) is not list or not pairs:
        return None
    if not all(type(pair) is dict and pair.keys() == PAIR_KEYS for pair in pairs):
        return None
    users, movies = [pair["user_id"] for pair in pairs], [pair["movie_id"] for pair in pairs]
    if set(map(type, users)) | set(map(type, movies)) != {int}:
        return None
    return PairIds(users, movies)


Rows = list[tuple[int | None, int | None]]


def look_up(bundle: ServedBundle, pairs: PairIds) -> tuple[Rows, list[int]]:
    """Each pair's (user row, movie row), None where unknown, and the positions of known pairs."""
    users, movies = bundle.user_rows, bundle.movie_rows
    rows = list(zip(map(users.get, pairs.users), map(movies.get, pairs.movies), strict=True))
    return rows, [i for i, (u, m) in enumerate(rows) if u is not None and m is not None]


def answer_json(version: str, pairs: PairIds, rows: Rows, known: list[int], stars: np.ndarray) -> bytes:
    """The `Predictions` answer as JSON, built from plain dicts (pydantic models per pair would
    cost more than the model call)."""
    by_position = dict(zip(known, stars.tolist(), strict=True))
    predictions = []
    for i, (user_id, movie_id) in enumerate(zip(pairs.users, pairs.movies, strict=True)):
        value = by_position.get(i)
        item: dict[str, Any] = {"user_id": user_id, "movie_id": movie_id}
        if value is not None:
            item.update(predicted_rating=round(value, 4), error=None)
        else:
            unknown = [
                f"unknown {name} {identifier}"
                for name, identifier, row in (
                    ("user_id", user_id, rows[i][0]),
                    ("movie_id", movie_id, rows[i][1]),
                )
                if row is None
            ]
            item.update(predicted_rating=None, error="; ".join(unknown))
        predictions.append(item)
    return pydantic_core.to_json({"model_version": version, "predictions": predictions})
