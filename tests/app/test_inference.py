"""What a merged model call does: concurrent requests scored together, each getting its own answer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from app.inference import PredictRequest, RecommendRequest, predict_batch, recommend_batch
from app.main import create_app
from app.served import ServedBundle
from app.settings import Settings
from tests.support.api import serving
from tests.support.bundles import expected_top

pytestmark = pytest.mark.anyio


async def test_concurrent_requests_through_the_app_are_batched_and_correct(tiny_model_dir: Path):
    settings = Settings(model_dir=tiny_model_dir, batch_window_ms=20, reload_interval_s=0)
    app = create_app(settings)
    async with serving(app) as client:
        service = app.state.service
        bundle = service.bundle.bundle
        users = bundle.encoders.users[:24]
        responses = await asyncio.gather(
            *(client.get(f"/users/{u}/recommendations", params={"k": 5}) for u in users)
        )
        registry, kind = service.metrics.registry, {"kind": "recommend"}
        requests_scored = registry.get_sample_value("model_batch_size_sum", kind)
        model_calls = registry.get_sample_value("model_batch_size_count", kind)
    for user_id, response in zip(users, responses, strict=True):
        assert response.status_code == 200
        body = response.json()
        assert body["user_id"] == user_id
        ids, stars, _ = expected_top(bundle, user_id, 5)
        assert [r["movie_id"] for r in body["recommendations"]] == ids
        np.testing.assert_allclose([r["predicted_rating"] for r in body["recommendations"]], stars, atol=1e-3)
    assert requests_scored == len(users)
    assert model_calls < len(users)


async def test_merged_predict_requests_each_get_their_own_pairs_back(tiny_model_dir: Path):
    """Different bodies merged into one model call come back to their own senders, in order."""
    settings = Settings(model_dir=tiny_model_dir, batch_window_ms=50, reload_interval_s=0)
    app = create_app(settings)
    async with serving(app) as client:
        bundle = app.state.service.bundle.bundle
        rng = np.random.default_rng(5)
        bodies = [
            [
                (bundle.encoders.users[u], bundle.encoders.movies[m])
                for u, m in zip(rng.integers(0, 60, n), rng.integers(0, 200, n), strict=True)
            ]
            for n in (1, 3, 7, 2, 5, 4)
        ]
        responses = await asyncio.gather(
            *(
                client.post("/predict", json={"pairs": [{"user_id": u, "movie_id": m} for u, m in body]})
                for body in bodies
            )
        )
        calls = app.state.service.metrics.registry.get_sample_value(
            "model_batch_size_count", {"kind": "predict"}
        )
    assert calls < len(bodies), "the requests were merged"
    for body, response in zip(bodies, responses, strict=True):
        rows = np.array(
            [[bundle.encoders.users.index(u), bundle.encoders.movies.index(m)] for u, m in body], np.int32
        )
        expected = bundle.encoders.to_stars(bundle.model.predict(rows, verbose=0)["rating"].reshape(-1))
        got = response.json()["predictions"]
        assert [(p["user_id"], p["movie_id"]) for p in got] == body
        np.testing.assert_allclose([p["predicted_rating"] for p in got], expected, atol=1e-3)


def test_a_batch_spanning_a_live_swap_scores_each_request_on_its_own_bundle(two_versions: Path):
    """During a swap one merged call holds requests of both versions: each must be scored, and
    its top-k chosen, on the bundle it started on (v2's weights differ, so a mix-up shows)."""
    old, new = (ServedBundle.load(two_versions / version) for version in ("v1", "v2"))
    pairs = np.array([[0, 0], [1, 2], [3, 1]], np.int32)
    order = [old, new, new, old]
    predicted = predict_batch([PredictRequest(bundle, pairs) for bundle in order])
    for bundle, stars in zip(order, predicted, strict=True):
        expected = bundle.encoders.to_stars(bundle.scorer.score_pairs(pairs).rating.astype(np.float64))
        np.testing.assert_allclose(stars, expected, rtol=1e-6)
    assert not np.allclose(predicted[0], predicted[1]), "v1 and v2 should answer differently"
    user = old.encoders.users[0]
    ranked = recommend_batch([RecommendRequest(bundle, user, k=5, stored=()) for bundle in order])
    for bundle, recommended in zip(order, ranked, strict=True):
        alone = recommend_batch([RecommendRequest(bundle, user, k=5, stored=())])[0]
        assert recommended.ranked is not None and alone.ranked is not None
        np.testing.assert_allclose(recommended.ranked.stars, alone.ranked.stars, rtol=1e-6)
