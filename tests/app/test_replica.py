"""Replica identity: `x-replica` and `x-model-version` on every response, `replica` in /model."""

from __future__ import annotations

import socket

from fastapi.testclient import TestClient

from app.bundle_store import point_current
from app.main import create_app
from app.settings import Settings


def test_every_response_names_the_replica_and_the_bundle(two_versions):
    settings = Settings(model_dir=two_versions, reload_interval_s=0, admin_token="t", replica_name="api-2")
    with TestClient(create_app(settings)) as client:
        for response in (
            client.get("/model"),
            client.get("/healthz"),
            client.get("/users/1/recommendations?k=0"),  # 422
            client.get("/movies/999999999"),  # 404
            client.get("/no-such-route"),
            client.post("/predict", content=b"x" * 3_000_000),  # 413 from the body limit
        ):
            assert response.headers["x-replica"] == "api-2", response.request.url
            assert response.headers["x-model-version"] == "v1", response.request.url
        model = client.get("/model").json()
        assert (model["replica"], model["version"]) == ("api-2", "v1")

        point_current(two_versions, "v2")
        client.post("/admin/reload", headers={"authorization": "Bearer t"})
        assert client.get("/healthz").headers["x-model-version"] == "v2"
        assert client.get("/model").json()["version"] == "v2"


def test_the_replica_is_the_host_name_unless_set(monkeypatch):
    monkeypatch.delenv("REPLICA_NAME", raising=False)
    assert Settings().replica_name == socket.gethostname()
    monkeypatch.setenv("REPLICA_NAME", "api-7d9f8b6c5-x2l4q")
    assert Settings().replica_name == "api-7d9f8b6c5-x2l4q"
