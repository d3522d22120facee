"""Who may write: API_TOKEN and ADMIN_TOKEN through one bearer dependency, and start-up refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.main import create_app
from app.settings import Settings, is_loopback
from tests.support.api import serving
from tests.support.feedback import feedback_settings

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
async def guarded(tiny_model_dir, served_tiny_bundle, feedback_url, monkeypatch):
    """The app with API_TOKEN=w-token and ADMIN_TOKEN=a-token, as an HTTP client."""
    monkeypatch.setattr("app.service.freeze_heap", lambda: None)
    settings = feedback_settings(tiny_model_dir, feedback_url, api_token="w-token", admin_token="a-token")
    app = create_app(settings, served_tiny_bundle)
    async with serving(app) as client:
        yield client, served_tiny_bundle.encoders.movies[0]


def write_requests(movie_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("PUT", f"/users/3/ratings/{movie_id}", {"rating": 4}),
        ("POST", "/users/3/ratings", {"ratings": [{"movie_id": movie_id, "rating": 4}]}),
        ("DELETE", f"/users/3/ratings/{movie_id}", None),
    ]


REFUSED = [
    {},
    {"authorization": "w-token"},  # no scheme: passed for ADMIN_TOKEN before
    {"authorization": "Bearer"},
    {"authorization": "Bearer wrong"},
    {"authorization": "Bearer w-token2"},
    {"authorization": "Basic dy10b2tlbjo="},
    {"authorization": "Token w-token"},
]


@pytest.mark.parametrize("feedback_url", ["sqlite"], indirect=True)
async def test_every_write_needs_the_api_token_as_a_bearer_token(guarded):
    client, movie_id = guarded
    for method, path, body in write_requests(movie_id):
        for headers in REFUSED:
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, headers, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "API_TOKEN" in response.json()["detail"]
    assert (await client.get("/users/3/ratings")).status_code == 404, "nothing was stored"
    for scheme in ("Bearer", "bearer"):
        for method, path, body in write_requests(movie_id):
            headers = {"authorization": f"{scheme} w-token"}
            response = await client.request(method, path, json=body, headers=headers)
            assert response.status_code in (200, 204), (method, response.text)


@pytest.mark.parametrize("feedback_url", ["sqlite"], indirect=True)
async def test_reads_stay_open_and_the_admin_token_is_bearer_only(guarded):
    client, movie_id = guarded
    await client.put(
        f"/users/3/ratings/{movie_id}", json={"rating": 2}, headers={"authorization": "Bearer w-token"}
    )
    assert (await client.get("/users/3/ratings")).status_code == 200
    assert (await client.get(f"/movies/{movie_id}")).status_code == 200
    assert (await client.get("/readyz")).json()["database"] == "ok"
    for headers in [*REFUSED, {"authorization": "a-token"}, {"authorization": "Bearer w-token"}]:
        response = await client.post("/admin/reload", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert (
        await client.post("/admin/reload", headers={"authorization": "Bearer a-token"})
    ).status_code == 200


@pytest.mark.parametrize("feedback_url", ["sqlite"], indirect=True)
async def test_the_openapi_page_asks_for_a_bearer_token_only_where_one_is_needed(guarded, api):
    client, _ = guarded
    guarded_paths = (await client.get("/openapi.json")).json()["paths"]
    assert guarded_paths["/users/{user_id}/ratings/{movie_id}"]["put"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in guarded_paths["/users/{user_id}/ratings"]["get"]
    open_paths = (await api.get("/openapi.json")).json()["paths"]
    assert "security" not in open_paths["/users/{user_id}/ratings/{movie_id}"]["put"]


@pytest.mark.parametrize("setting", ["admin_token", "api_token"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_token_is_a_setting_error(tmp_path, setting, value):
    with pytest.raises(ValidationError, match="set but empty"):
        Settings(model_dir=tmp_path, **{setting: value})


@pytest.mark.parametrize(
    ("flags", "env", "says"),
    [
        ([], {"ADMIN_TOKEN": ""}, "ADMIN_TOKEN"),
        ([], {"API_TOKEN": " "}, "API_TOKEN"),
        (["--host", "0.0.0.0"], {}, "ALLOW_ANONYMOUS_WRITES=true"),
        ([], {"HOST": "::"}, "ALLOW_ANONYMOUS_WRITES=true"),
    ],
)
def test_the_server_refuses_to_start_in_one_line_with_exit_status_2(tiny_model_dir, flags, env, says):
    finished = subprocess.run(
        [sys.executable, "-m", "app", *flags],
        cwd=REPO,
        env={**os.environ, "MODEL_DIR": str(tiny_model_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = finished.stderr.strip().splitlines()
    assert finished.returncode == 2 and len(lines) == 1 and says in lines[0], finished.stderr


def test_open_writes_beyond_loopback_need_a_token_or_a_deliberate_choice(tmp_path):
    def problem(**values) -> str | None:
        return Settings(model_dir=tmp_path, **values).exposure_problem()

    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert problem(host=host) is None, host
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert "API_TOKEN" in problem(host=host) and "ALLOW_ANONYMOUS_WRITES" in problem(host=host)
        assert problem(host=host, api_token="t") is None
        assert problem(host=host, allow_anonymous_writes=True) is None
    assert is_loopback("127.9.9.9") and not is_loopback("10.0.0.1")
