"""The service: live swaps under load, refused bundles, and a full queue answering 503."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import httpx
import pytest

from app import logs
from app.bundle import MODEL_FILE
from app.bundle_store import point_current
from app.main import create_app
from app.settings import Settings
from tests.support.api import serving
from tests.support.bundles import drop_last_movies, reverse_users

pytestmark = pytest.mark.anyio


async def test_a_swap_under_load_drops_nothing(two_versions):
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0.02))
    async with serving(app) as client:
        user_id = app.state.service.bundle.encoders.users[0]

        async def ask(i: int) -> httpx.Response:
            await asyncio.sleep(i * 0.01)  # spread over 3 s, so the swap lands mid-way
            if i % 2:
                return await client.post("/predict", json={"pairs": [{"user_id": user_id, "movie_id": 1}]})
            return await client.get(f"/users/{user_id}/recommendations", params={"k": 3})

        async def swap() -> None:
            await asyncio.sleep(0.1)
            point_current(two_versions, "v2")

        *responses, _ = await asyncio.gather(*(ask(i) for i in range(300)), swap())
        for _ in range(100):
            if (await client.get("/model")).json()["version"] == "v2":
                break
            await asyncio.sleep(0.02)
    assert [r.status_code for r in responses] == [200] * 300
    versions = [r.json()["model_version"] for r in responses]
    assert set(versions) == {"v1", "v2"}, "the swap should land while requests are in flight"
    answers: dict[tuple[str, str], set] = {}  # (kind, version) -> the distinct answers given
    for i, response in enumerate(responses):
        body = response.json()
        kind = "predict" if i % 2 else "recommend"
        rows = body["predictions"] if i % 2 else body["recommendations"]
        answer = tuple((row["movie_id"], round(row["predicted_rating"], 4)) for row in rows)
        answers.setdefault((kind, body["model_version"]), set()).add(answer)
    for kind in ("predict", "recommend"):  # each version answers as itself, and the two differ
        assert len(answers[kind, "v1"]) == len(answers[kind, "v2"]) == 1, answers
        assert answers[kind, "v1"] != answers[kind, "v2"]
    assert (
        app.state.service.metrics.registry.get_sample_value("model_events_total", {"event": "swapped"}) == 1
    )


async def test_a_corrupt_new_bundle_is_refused_and_the_old_one_serves(two_versions):
    (two_versions / "v2" / MODEL_FILE).write_bytes(b"corrupt")
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0))
    async with serving(app) as client:
        service = app.state.service
        point_current(two_versions, "v2")
        assert await service.reload() == "refused"
        assert await service.reload() == "refused"  # remembered: not reloaded on every poll
        user_id = service.bundle.encoders.users[0]
        response = await client.get(f"/users/{user_id}/recommendations")
        metadata = (await client.get("/model")).json()
        refused = service.metrics.registry.get_sample_value("model_events_total", {"event": "refused"})
    assert response.status_code == 200 and response.json()["model_version"] == "v1"
    assert metadata["version"] == "v1"
    assert refused == 1


async def test_a_full_queue_answers_503_with_retry_after(tiny_model_dir):
    app = create_app(
        Settings(model_dir=tiny_model_dir, reload_interval_s=0, max_queue=2, batch_window_ms=300)
    )
    async with serving(app) as client:
        user_id = app.state.service.bundle.encoders.users[0]
        responses = await asyncio.gather(
            *(client.get(f"/users/{user_id}/recommendations") for _ in range(10))
        )
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1" and "detail" in rejected.json()


async def test_a_bundle_swapped_out_after_answering_requests_is_freed(two_versions):
    """Requests on the old bundle leave nothing behind that keeps it (a batch, a queue, a cache)."""
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0))
    async with serving(app) as client:
        service = app.state.service
        user_id = service.bundle.encoders.users[0]

        async def ask() -> set[int]:
            return {
                (await client.get(f"/users/{user_id}/recommendations")).status_code,
                (
                    await client.post("/predict", json={"pairs": [{"user_id": user_id, "movie_id": 1}]})
                ).status_code,
            }

        assert await ask() == {200}
        old = weakref.ref(service.bundle)
        point_current(two_versions, "v2")
        assert await service.reload() == "swapped"
        assert await ask() == {200}
        gc.collect()
        assert old() is None


@pytest.mark.parametrize("damage", ["drop_last_movies", "reverse_users"])
async def test_a_bundle_whose_encoders_do_not_match_its_model_is_never_swapped_in(two_versions, damage):
    if damage == "drop_last_movies":
        drop_last_movies(two_versions / "v2", 100)
    else:
        reverse_users(two_versions / "v2")
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0))
    async with app.router.lifespan_context(app):
        point_current(two_versions, "v2")
        assert await app.state.service.reload() == "refused"
        assert app.state.service.bundle.version == "v1"


class Lines(logging.Handler):
    """The service's log records, as they are logged (before the JSON writer thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, event: str) -> list[dict]:
        return [r.fields for r in self.records if r.getMessage() == event]


@pytest.fixture
def lines():
    handler = Lines()
    logs.logger.addHandler(handler)
    yield handler
    logs.logger.removeHandler(handler)


async def test_a_refused_bundle_fixed_in_place_is_swapped_in(two_versions):
    model = (two_versions / "v2" / MODEL_FILE).read_bytes()
    (two_versions / "v2" / MODEL_FILE).write_bytes(b"corrupt")
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0))
    async with app.router.lifespan_context(app):
        service = app.state.service
        point_current(two_versions, "v2")
        assert await service.reload() == "refused"
        assert await service.reload() == "refused"
        (two_versions / "v2" / MODEL_FILE).write_bytes(model)  # the operator puts the right file back
        assert await service.reload() == "swapped"
        assert service.bundle.version == "v2"


async def test_a_dangling_current_is_logged_once_and_counted(two_versions, lines):
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0.02))
    async with app.router.lifespan_context(app):
        (two_versions / "current").unlink()
        (two_versions / "current").symlink_to("v3")  # no such version
        await asyncio.sleep(0.5)
        refusals = app.state.service.metrics.registry.get_sample_value(
            "model_events_total", {"event": "refused"}
        )
    assert len(lines.events("model refused")) == 1, lines.events("model refused")
    assert "v3" in lines.events("model refused")[0]["reason"]
    assert refusals >= 2


async def test_a_model_dir_that_cannot_be_read_is_a_refusal_with_a_reason(two_versions, lines):
    """`current` pointing at a name the system cannot even look up (longer than NAME_MAX): the
    OSError is a refusal with its reason, never an exception out of reload or the watcher."""
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0.02))
    async with app.router.lifespan_context(app):
        (two_versions / "current").unlink()
        (two_versions / "current").symlink_to("v" * 300)
        assert await app.state.service.reload() == "refused"
        await asyncio.sleep(0.3)
        assert app.state.service.bundle.version == "v1"
    assert [e["reason"] for e in lines.events("model refused")] == [
        lines.events("model refused")[0]["reason"]
    ]
    assert "name too long" in lines.events("model refused")[0]["reason"].lower()


async def test_an_unexpected_error_in_the_background_check_is_logged_once_and_counted(two_versions, lines):
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0.02))
    async with app.router.lifespan_context(app):
        service = app.state.service

        async def broken(force: bool = False) -> str:
            raise RuntimeError("disk on fire")

        service.reload = broken
        await asyncio.sleep(0.3)
        errors = service.metrics.registry.get_sample_value("model_events_total", {"event": "error"})
    assert [e["reason"] for e in lines.events("model check failed")] == ["disk on fire"]
    assert errors >= 2


async def test_readiness_and_liveness_say_so_when_a_model_worker_has_stopped(tiny_model_dir):
    app = create_app(Settings(model_dir=tiny_model_dir, reload_interval_s=0))
    async with serving(app) as client:
        service = app.state.service
        user_id = service.bundle.encoders.users[0]
        assert (await client.get("/readyz")).status_code == 200
        service._recommend._worker.cancel()  # however it ends, it must not go unnoticed
        await asyncio.sleep(0.01)
        ready, live = await client.get("/readyz"), await client.get("/healthz")
        async with asyncio.timeout(5):
            asked = await client.get(f"/users/{user_id}/recommendations")
    assert ready.status_code == 503 and "worker" in ready.json()["status"]
    assert live.status_code == 503
    assert asked.status_code == 503 and asked.headers["retry-after"]


async def test_predict_admission_counts_pairs_not_requests(tiny_model_dir):
    """MAX_QUEUED_PAIRS=100: of ten 60-pair requests at once, some wait, the rest get 503 at once."""
    app = create_app(
        Settings(model_dir=tiny_model_dir, reload_interval_s=0, max_queued_pairs=100, batch_window_ms=300)
    )
    async with serving(app) as client:
        encoders = app.state.service.bundle.encoders
        body = {"pairs": [{"user_id": encoders.users[0], "movie_id": m} for m in encoders.movies[:60]]}
        responses = await asyncio.gather(*(client.post("/predict", json=body) for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses, statuses
    assert next(r for r in responses if r.status_code == 503).headers["retry-after"] == "1"
