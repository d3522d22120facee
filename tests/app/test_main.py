"""The assembled app: offline docs pages, unknown paths, and CORS only when configured."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.support.api import assert_clean_4xx


def test_docs_pages_reference_no_external_host(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""", html)
        flat = [u for pair in urls for u in pair if u]
        assert flat, f"{page} loads nothing?"
        assert all(u.startswith("/") for u in flat), flat
        assert "cdn" not in html.lower()
        for url in flat:
            assert client.get(url).status_code == 200, url


def test_an_unknown_path_gets_a_clean_4xx(client):
    assert_clean_4xx(client.get("/nowhere"))


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
