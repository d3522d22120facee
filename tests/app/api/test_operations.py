"""Operations routes: the bundle's metadata, liveness, readiness, metrics and the admin reload."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.bundle_store import point_current
from app.main import create_app
from app.settings import Settings
from tests.support.api import assert_clean_4xx


def test_model_health_readiness_and_metrics(client, tiny_loaded):
    assert client.get("/model").json()["version"] == tiny_loaded.version
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json() == {
        "status": "ready",
        "model_version": tiny_loaded.version,
        "database": "ok",
    }
    client.get(f"/users/{tiny_loaded.encoders.users[0]}/recommendations")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}' in text
    assert "http_request_duration_seconds_bucket" in text
    assert 'model_batch_size_count{kind="recommend"}' in text
    assert f'model_version_info{{version="{tiny_loaded.version}"}} 1.0' in text


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


def test_without_a_token_admin_reload_is_a_clean_4xx(client):
    assert_clean_4xx(client.post("/admin/reload"))


def test_readiness_is_503_until_a_bundle_is_loaded(tiny_model_dir):
    """Before `Service.start` has installed a bundle, readiness says loading; liveness is fine."""
    from app.metrics import create_metrics
    from app.service import Service

    settings = Settings(model_dir=tiny_model_dir, reload_interval_s=0)
    app = create_app(settings)
    app.state.service = Service(settings, create_metrics())
    client = TestClient(app)  # not entered: the lifespan, which loads the bundle, does not run
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "loading"
    assert client.get("/users/7/recommendations").status_code == 503
