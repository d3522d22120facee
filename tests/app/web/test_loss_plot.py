"""`GET /model/loss.png`: the served bundle's loss curve, or a 404 that says there is none."""

from __future__ import annotations

from fastapi.testclient import TestClient

from app.bundle import LOSS_PLOT_FILE, write_manifest
from app.main import create_app
from app.settings import Settings
from tests.support.api import assert_clean_4xx

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_loss_plot_is_the_bundles_png(client, tiny_bundle):
    response = client.get("/model/loss.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)
    assert response.content == (tiny_bundle / LOSS_PLOT_FILE).read_bytes()


def test_a_bundle_without_a_loss_plot_answers_404_saying_so(model_dir_copy):
    (model_dir_copy / "current" / LOSS_PLOT_FILE).unlink()
    write_manifest(model_dir_copy / "current")  # a bundle published without one
    settings = Settings(model_dir=model_dir_copy, reload_interval_s=0)
    with TestClient(create_app(settings)) as client:
        response = client.get("/model/loss.png")
        version = client.get("/model").json()["version"]
    assert response.status_code == 404
    assert_clean_4xx(response)
    assert response.json()["detail"] == f"the served model {version} has no loss plot"


def test_the_api_docs_list_the_routes_made_for_the_page(client):
    paths = client.get("/openapi.json").json()["paths"]
    search = paths["/movies"]["get"]
    assert {p["name"] for p in search["parameters"]} == {"query", "limit"}
    assert search["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("MovieSearch")
    plot = paths["/model/loss.png"]["get"]
    assert list(plot["responses"]["200"]["content"]) == ["image/png"]
    assert "404" in plot["responses"]
    assert "/" not in paths and not any(path.startswith("/web/") for path in paths)
