"""Hostile input, live model swaps, refused bundles, overload and CORS, against the real app."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.bundle import MODEL_FILE
from app.bundle_store import point_current
from app.main import create_app
from app.settings import Settings

FORBIDDEN_IN_ERRORS = ("Traceback", 'File "', "/site-packages/", "/work/", "/tmp/")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path):
    settings = Settings(model_dir=tiny_model_dir, reload_interval_s=0, max_body_bytes=100_000)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def two_versions(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A model folder serving v1, with a v2 beside it (same weights, another version name)."""
    source = (tiny_model_dir / "current").resolve()
    for version in ("v1", "v2"):
        shutil.copytree(source, tmp_path / version)
        metadata = json.loads((tmp_path / version / "metadata.json").read_text())
        metadata["version"] = version
        (tmp_path / version / "metadata.json").write_text(json.dumps(metadata))
    point_current(tmp_path, "v1")
    return tmp_path


HOSTILE = [
    ("GET", "/users/abc/recommendations", None, {}),
    ("GET", "/users/1.5/recommendations", None, {}),
    ("GET", "/users/%F0%9F%8E%AC/recommendations", None, {}),
    ("GET", "/users/99999999999999999999999999999/recommendations", None, {}),
    ("GET", "/users/-1/recommendations", None, {}),
    ("GET", "/users/1/recommendations?k=-1", None, {}),
    ("GET", "/users/1/recommendations?k=1e3", None, {}),
    ("GET", "/users/1/recommendations?k=", None, {}),
    ("GET", "/users/1/recommendations?fallback=everything", None, {}),
    ("GET", "/users/1/ratings?limit=-5", None, {}),
    ("GET", "/movies/%00", None, {}),
    ("GET", "/movies/1e400", None, {}),
    ("GET", "/nowhere", None, {}),
    ("POST", "/users/1/recommendations", None, {}),
    ("POST", "/predict", b"", {"content-type": "application/json"}),
    ("POST", "/predict", b'{"pairs": [', {"content-type": "application/json"}),
    ("POST", "/predict", b"\xff\xfe\x00", {"content-type": "application/json"}),
    ("POST", "/predict", b"pairs=1", {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/predict", b'{"pairs": [{"user_id": 1, "movie_id": 1}]}', {"content-type": "text/plain"}),
    ("POST", "/predict", b"[]", {"content-type": "application/json"}),
    ("POST", "/predict", b'{"pairs": null}', {"content-type": "application/json"}),
    (
        "POST",
        "/predict",
        b'{"pairs": [{"user_id": 1.5, "movie_id": 1}]}',
        {"content-type": "application/json"},
    ),
    (
        "POST",
        "/predict",
        b'{"pairs": [{"user_id": "\xc3\xa9", "movie_id": 1}]}',
        {"content-type": "application/json"},
    ),
    (
        "POST",
        "/predict",
        b'{"pairs": [{"user_id": 1, "movie_id": 1, "x": 2}]}',
        {"content-type": "application/json"},
    ),
    ("POST", "/predict", b'{"pairs": [{"user_id": 1}], "extra": true}', {"content-type": "application/json"}),
    ("POST", "/predict", b'{"pairs": [[1, 2]]}', {"content-type": "application/json"}),
    (
        "POST",
        "/predict",
        b'{"pairs": [{"user_id": 1e999, "movie_id": 1}]}',
        {"content-type": "application/json"},
    ),
    ("POST", "/predict", b"[" * 10_000 + b"]" * 10_000, {"content-type": "application/json"}),
    ("POST", "/admin/reload", None, {}),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), HOSTILE)
def test_hostile_input_gets_a_clean_4xx(client, method, path, body, headers):
    response = client.request(method, path, content=body, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()
    assert not any(leak in response.text for leak in FORBIDDEN_IN_ERRORS), response.text


def test_huge_ids_are_unknown_not_errors(client):
    pairs = [{"user_id": 10**30, "movie_id": -(10**30)}]
    prediction = client.post("/predict", json={"pairs": pairs}).json()["predictions"][0]
    assert prediction["predicted_rating"] is None and "unknown user_id" in prediction["error"]


def test_a_large_body_is_refused_with_413_before_it_is_read(client):
    response = client.post("/predict", content=b"x" * 200_000, headers={"content-type": "application/json"})
    assert response.status_code == 413
    chunks = (b"x" * 50_000 for _ in range(5))  # no content-length: counted while streaming
    response = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_no_cors_headers_unless_configured(client, tiny_model_dir):
    origin = {"origin": "https://elsewhere.example"}
    assert "access-control-allow-origin" not in client.get("/healthz", headers=origin).headers
    settings = Settings(
        model_dir=tiny_model_dir, reload_interval_s=0, cors_origins=["https://elsewhere.example"]
    )
    with TestClient(create_app(settings)) as allowed:
        assert (
            allowed.get("/healthz", headers=origin).headers["access-control-allow-origin"] == origin["origin"]
        )


def test_admin_reload_exists_only_with_a_token_and_checks_it(two_versions):
    settings = Settings(model_dir=two_versions, reload_interval_s=0, admin_token="s3cret")
    with TestClient(create_app(settings)) as admin:
        assert admin.post("/admin/reload").status_code == 401
        assert admin.post("/admin/reload", headers={"authorization": "Bearer wrong"}).status_code == 401
        bearer = {"authorization": "Bearer s3cret"}
        assert admin.post("/admin/reload", headers=bearer).json()["outcome"] == "unchanged"
        point_current(two_versions, "v2")
        assert admin.post("/admin/reload", headers=bearer).json() == {
            "outcome": "swapped",
            "model_version": "v2",
        }
        assert admin.get("/model").json()["version"] == "v2"


@pytest.mark.anyio
async def test_a_swap_under_load_drops_nothing(two_versions):
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0.02))
    async with app.router.lifespan_context(app):
        user_id = app.state.service.bundle.encoders.users[0]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def ask(i: int) -> httpx.Response:
                await asyncio.sleep(i * 0.01)  # spread over 3 s, so the swap lands mid-way
                if i % 2:
                    return await client.post(
                        "/predict", json={"pairs": [{"user_id": user_id, "movie_id": 1}]}
                    )
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
    assert (
        app.state.service.metrics.registry.get_sample_value("model_events_total", {"event": "swapped"}) == 1
    )


@pytest.mark.anyio
async def test_a_corrupt_new_bundle_is_refused_and_the_old_one_serves(two_versions):
    (two_versions / "v2" / MODEL_FILE).write_bytes(b"corrupt")
    app = create_app(Settings(model_dir=two_versions, reload_interval_s=0))
    async with app.router.lifespan_context(app):
        service = app.state.service
        point_current(two_versions, "v2")
        assert await service.reload() == "refused"
        assert await service.reload() == "refused"  # remembered: not reloaded on every poll
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            user_id = service.bundle.encoders.users[0]
            response = await client.get(f"/users/{user_id}/recommendations")
            metadata = (await client.get("/model")).json()
        refused = service.metrics.registry.get_sample_value("model_events_total", {"event": "refused"})
    assert response.status_code == 200 and response.json()["model_version"] == "v1"
    assert metadata["version"] == "v1"
    assert refused == 1


@pytest.mark.anyio
async def test_a_full_queue_answers_503_with_retry_after(tiny_model_dir):
    app = create_app(
        Settings(model_dir=tiny_model_dir, reload_interval_s=0, max_queue=2, batch_window_ms=300)
    )
    async with app.router.lifespan_context(app):
        user_id = app.state.service.bundle.encoders.users[0]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            responses = await asyncio.gather(
                *(client.get(f"/users/{user_id}/recommendations") for _ in range(10))
            )
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1" and "detail" in rejected.json()
