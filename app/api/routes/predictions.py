"""`POST /predict`: predicted stars for user-movie pairs."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError

from app.api.deps import BundleDep, ServiceDep
from app.api.responses import UNAVAILABLE
from app.schemas import Pair, PredictBody, Prediction, Predictions

router = APIRouter(tags=["recommendations"])


@router.post(
    "/predict",
    response_model=Predictions,
    responses=UNAVAILABLE,
    summary="Predicted ratings for user-movie pairs",
)
async def predict(body: PredictBody, request: Request, service: ServiceDep, bundle: BundleDep) -> Predictions:
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
    rows = [(bundle.user_rows.get(p.user_id), bundle.movie_rows.get(p.movie_id)) for p in body.pairs]
    known = [i for i, (u, m) in enumerate(rows) if u is not None and m is not None]
    stars: np.ndarray = np.zeros(0)
    if known:
        batched = await service.predict(bundle, np.array([rows[i] for i in known], dtype=np.int32))
        request.state.batch_size = batched.batch_size
        stars = batched.value
    by_position = dict(zip(known, stars.tolist(), strict=True))
    return Predictions(
        model_version=bundle.version,
        predictions=[_prediction(pair, by_position.get(i), rows[i]) for i, pair in enumerate(body.pairs)],
    )


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
