"""The page's files: served at `/` and under `/web/`, self-contained, packaged, and calling the
public API only (the browser tests in `test_browser.py` check what they do)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch

from app.web import ASSETS, PAGE, WEB_DIR
from tests.support import REPO
from tests.support.api import assert_clean_4xx
from tests.support.deployment import build_context, copy_sources, dockerfile_stages

FILES = [PAGE, *ASSETS]


def test_the_page_is_served_at_the_root_with_a_policy_that_keeps_it_offline(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.text == (WEB_DIR / PAGE).read_text()


def test_everything_the_page_loads_is_served_by_the_app_itself(client):
    html = client.get("/").text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert "web/app.js" in urls and "web/style.css" in urls
    for url in urls:
        if url.startswith("#") or url.startswith("data:"):
            continue
        assert not url.startswith(("/", "http:", "https:")), (
            f"{url}: relative URLs keep a path prefix working"
        )
        assert client.get(f"/{url}").status_code == 200, url
    assert client.get("/web/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/web/style.css").headers["content-type"].startswith("text/css")


def test_no_file_names_another_host_or_a_font():
    for name in FILES:
        text = (WEB_DIR / name).read_text()
        assert not re.search(r"https?://|//[a-z0-9-]+\.[a-z]", text, re.IGNORECASE), name
        assert "@import" not in text and "@font-face" not in text and "innerHTML" not in text, name


def test_only_the_pages_own_files_are_served(client):
    for path in ("/web/__init__.py", "/web/", "/web/../app/main.py", "/web/index.html.bak", "/index.html"):
        assert_clean_4xx(client.get(path))


def test_the_script_calls_only_routes_of_the_public_api(client):
    script = (WEB_DIR / "app.js").read_text()
    calls = re.findall(r"""api\("(GET|PUT|POST|DELETE)", [`"]([^`"]+)[`"]""", script)
    calls += [("GET", url) for url in re.findall(r"""new URL\("([^"]+)", document\.baseURI\)""", script)]
    documented = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
        for path, operations in client.get("/openapi.json").json()["paths"].items()
        for method in operations
    }
    used = {(method, "/" + re.sub(r"\$\{[^}]+\}", "{}", path)) for method, path in calls}
    assert len(used) >= 7, used
    assert used <= documented, used - documented


def test_the_files_are_package_data_and_reach_the_docker_image():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["app.web"]
    for name in FILES:
        assert any(fnmatch(name, pattern) for pattern in patterns), f"{name} is not package data"
    copied = [source.rstrip("/") for stage in dockerfile_stages() for source in copy_sources(stage)]
    assert "app" in copied
    ignored = build_context()
    for name in FILES:
        assert not ignored.matches(f"app/web/{name}"), f".dockerignore leaves app/web/{name} out of the image"
