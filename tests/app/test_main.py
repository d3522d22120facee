"""The assembled app: offline docs pages, unknown paths, and CORS only when configured."""

from __future__ import annotations

import re
import subprocess
import sys

from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.support import REPO
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


def test_the_server_never_imports_training(tiny_model_dir):
    """`app` must start and answer without `training` loaded (Keras itself imports pandas and
    matplotlib when they are installed, so those are no sign)."""
    script = f"""
import sys
from fastapi.testclient import TestClient
from app.main import create_app
from app.settings import Settings
import app.__main__
with TestClient(create_app(Settings(model_dir={str(tiny_model_dir)!r}, reload_interval_s=0))) as client:
    assert client.get("/users/7/recommendations").status_code == 200
    assert client.post("/predict", json={{"pairs": [{{"user_id": 7, "movie_id": 1}}]}}).status_code == 200
loaded = sorted(name for name in sys.modules if name.split(".")[0] == "training")
assert not loaded, loaded
"""
    finished = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
