"""Fixtures of the feedback store's tests (a pytest plugin, registered in tests/conftest.py).

`feedback_url` is parametrised over both engines, so that every test using it runs once on
SQLite (a file in the test's folder) and once on PostgreSQL (a fresh database in one throwaway
cluster per session: see `tests.support.postgres`). No mock and no SQLite stands in for
PostgreSQL. `postgres` is that cluster, for tests that stop, start or freeze it.

Every test, and every app a session- or module-scoped fixture builds, keeps its default SQLite
database (STATE_DIR) in a temporary folder, never in the working tree, and a test never reads
another test's stored ratings (training reads the SQLite file under STATE_DIR when it exists).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from app.feedback import FeedbackStore
from app.feedback.db import sqlite_url
from app.settings import Settings
from tests.support.postgres import PostgresCluster, find_binaries, running_cluster

if TYPE_CHECKING:  # imported inside the fixtures: the app loads TensorFlow (see tests/app/conftest.py)
    from fastapi import FastAPI

    from app.served import ServedBundle

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session", autouse=True)
def _session_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in ("STATE_DIR", "DATABASE_URL")}
    os.environ["STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    os.environ.pop("DATABASE_URL", None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the session (initdb'd and started on first use, removed at the end)."""
    binaries = find_binaries()
    if binaries is None:
        pytest.fail("PostgreSQL's binaries were not found: apt-get install -y postgresql, or set PG_BIN")
    with running_cluster(binaries) as cluster:
        yield cluster


@pytest.fixture(params=ENGINES)
def feedback_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or the PostgreSQL test database emptied (once each)."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "feedback.db")
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    cluster.ensure_running()
    return cluster.emptied_database()


@pytest.fixture
async def store(feedback_url: str) -> AsyncIterator[FeedbackStore]:
    """A started store on `feedback_url` (migrated, checked every 0.2 s)."""
    store = FeedbackStore(feedback_url, timeout_s=5.0, check_interval_s=0.2)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


def feedback_settings(model_dir: Path, database_url: str, **overrides: object) -> Settings:
    """Settings of an app on `database_url`, quick to notice the database come and go."""
    values = {
        "model_dir": model_dir,
        "reload_interval_s": 0,
        "database_url": database_url,
        "database_check_interval_s": 0.2,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def served_tiny_bundle(tiny_model_dir: Path) -> ServedBundle:
    """The tiny bundle loaded and warmed once, for apps that only need to serve it."""
    from app.bundle_store import current_bundle_path
    from app.served import ServedBundle

    return ServedBundle.load(current_bundle_path(tiny_model_dir))


@pytest.fixture
async def feedback_app(
    tiny_model_dir: Path, served_tiny_bundle: ServedBundle, feedback_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    """The app on the tiny bundle and `feedback_url`, started (lifespan entered).

    Without the heap freeze after a bundle is installed: a full collection over TensorFlow's
    objects costs half a second per app, and these tests measure no pauses.
    """
    from app.main import create_app

    monkeypatch.setattr("app.service.freeze_heap", lambda: None)
    app = create_app(feedback_settings(tiny_model_dir, feedback_url), served_tiny_bundle)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(feedback_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of `feedback_app`, in process."""
    transport = httpx.ASGITransport(app=feedback_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
