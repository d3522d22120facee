"""Limits every request meets in the app: a deadline, the body bytes in flight, and clients that
go away (recorded as such, 499, never as the client's error, 400)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from app.main import create_app
from app.settings import Settings
from tests.support.api import serving

pytestmark = pytest.mark.anyio


def sample(app, name: str, labels: dict) -> float:
    return app.state.service.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_request_past_its_deadline_gets_503_with_retry_after(tiny_model_dir):
    """A batch window of 1 s holds the request in the queue; REQUEST_TIMEOUT_S=0.3 answers first."""
    app = create_app(
        Settings(model_dir=tiny_model_dir, reload_interval_s=0, batch_window_ms=1000, request_timeout_s=0.3)
    )
    async with serving(app) as client:
        user_id = app.state.service.bundle.encoders.users[0]
        started = time.perf_counter()
        response = await client.get(f"/users/{user_id}/recommendations")
        waited = time.perf_counter() - started
        assert app.state.service._recommend.queued_work == 0  # its place given back
    assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
    assert "REQUEST_TIMEOUT_S" in response.json()["detail"]
    assert waited < 0.9


async def test_body_bytes_in_flight_are_bounded(tiny_model_dir):
    """MAX_INFLIGHT_BODY_BYTES=15,000: while one 9.6 kB body is being answered, another gets 503."""
    app = create_app(
        Settings(
            model_dir=tiny_model_dir, reload_interval_s=0, batch_window_ms=300, max_inflight_body_bytes=15_000
        )
    )
    async with serving(app) as client:
        encoders = app.state.service.bundle.encoders
        pairs = [{"user_id": encoders.users[0], "movie_id": m} for m in (encoders.movies * 2)[:300]]
        both = [client.post("/predict", json={"pairs": pairs}) for _ in range(2)]
        responses = await asyncio.gather(*both)
        alone = await client.post("/predict", json={"pairs": pairs})  # the bytes were given back
    assert sorted(r.status_code for r in responses) == [200, 503], [r.text for r in responses]
    assert next(r for r in responses if r.status_code == 503).headers["retry-after"] == "1"
    assert alone.status_code == 200


async def test_a_client_that_goes_away_is_recorded_as_499_not_400(tiny_model_dir):
    app = create_app(Settings(model_dir=tiny_model_dir, reload_interval_s=0))
    async with app.router.lifespan_context(app):
        sent = []

        async def receive():
            return {"type": "http.disconnect"}  # gone before its body arrived

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/predict",
            "raw_path": b"/predict",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        await app(scope, receive, send)
        gone = sample(app, "http_requests_total", {"method": "POST", "route": "/predict", "status": "499"})
        bad = sample(app, "http_requests_total", {"method": "POST", "route": "/predict", "status": "400"})
    assert (gone, bad) == (1.0, 0.0)


async def test_a_large_predict_request_is_parsed_and_answered_off_the_event_loop(tiny_model_dir):
    """The event loop's own CPU time for a 10,000-pair request: parsing the body, looking the
    pairs up and building the answer happen on a worker thread, so the loop stays free for
    /healthz and recommendations meanwhile."""
    app = create_app(Settings(model_dir=tiny_model_dir, reload_interval_s=0, log_level="warning"))
    async with serving(app) as client:
        encoders = app.state.service.bundle.encoders
        ids = zip(encoders.users * 200, encoders.movies * 60, strict=True)
        pairs = [{"user_id": user, "movie_id": movie} for user, movie in list(ids)[:10_000]]
        body = json.dumps({"pairs": pairs}).encode()
        headers = {"content-type": "application/json"}
        await client.post("/predict", content=body, headers=headers)  # warm
        spent = []
        for _ in range(3):
            before = time.thread_time()
            response = await client.post("/predict", content=body, headers=headers)
            spent.append(time.thread_time() - before)
    assert response.status_code == 200 and len(response.json()["predictions"]) == 10_000
    assert min(spent) < 0.015, spent
