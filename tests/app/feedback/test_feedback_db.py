"""Database set-up: URLs, migrations (also several processes at once), durability settings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from app.feedback import FeedbackStore
from app.feedback.db import Database, async_url, head_revision, migrate
from app.feedback.schema import ratings
from app.settings import DatabaseSettings

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/feedback", "postgresql+asyncpg://u:***@db:5432/feedback"),
        ("postgres://u@db/feedback", "postgresql+asyncpg://u@db/feedback"),
        ("postgresql+asyncpg://u@db/feedback", "postgresql+asyncpg://u@db/feedback"),
        ("sqlite:///state/feedback.db", "sqlite+aiosqlite:///state/feedback.db"),
        ("sqlite+aiosqlite:////abs/feedback.db", "sqlite+aiosqlite:////abs/feedback.db"),
    ],
)
def test_urls_get_their_asyncio_driver(given, expected):
    assert async_url(given).render_as_string(hide_password=True) == expected


@pytest.mark.parametrize(
    "given", ["mysql://u@db/x", "postgresql+psycopg2://u@db/x", "sqlite+pysqlite:///x.db", "not a url"]
)
def test_other_databases_and_drivers_are_refused_naming_the_accepted_forms(given):
    with pytest.raises(ValueError, match="postgresql://"):
        async_url(given)
    with pytest.raises(ValueError, match="database_url"):
        DatabaseSettings(database_url=given)


def test_without_database_url_the_default_is_sqlite_under_state_dir(tmp_path):
    settings = DatabaseSettings(state_dir=tmp_path / "st", database_url="")
    assert settings.feedback_database_url() == f"sqlite:///{tmp_path / 'st' / 'feedback.db'}"


def migrate_in_process(url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.feedback", "upgrade", "--database-url", url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def versions(url: str) -> list[tuple[str, ...]]:
    database = Database(url, timeout_s=5)
    try:
        async with database.reading() as connection:
            return [tuple(row) for row in await connection.execute(text("SELECT * FROM alembic_version"))]
    finally:
        await database.dispose()


def test_the_upgrade_command_migrates_even_with_another_process_at_it(feedback_url):
    processes = [migrate_in_process(feedback_url) for _ in range(2)]
    outcomes = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in processes]
    assert all(status == 0 for status, _, _ in outcomes), outcomes
    assert all(f"schema revision {head_revision()}" in out for _, out, _ in outcomes), outcomes
    assert asyncio.run(versions(feedback_url)) == [(head_revision(),)]


def test_many_migrations_racing_on_their_own_connections_all_succeed_once(feedback_url):
    async def race() -> list[str | None]:
        return await asyncio.gather(*(migrate(feedback_url) for _ in range(8)))

    assert asyncio.run(race()) == [head_revision()] * 8
    assert asyncio.run(versions(feedback_url)) == [(head_revision(),)]


def test_the_migrated_table_is_the_one_the_store_queries(feedback_url):
    async def reflect() -> tuple[list, dict, str]:
        assert await migrate(feedback_url) == head_revision()
        assert await migrate(feedback_url) == head_revision(), "a second upgrade does nothing"
        database = Database(feedback_url, timeout_s=5)
        try:
            async with database.snapshot() as connection:
                return await connection.run_sync(
                    lambda sync: (
                        inspect(sync).get_columns("ratings"),
                        inspect(sync).get_pk_constraint("ratings"),
                        database.dialect,
                    )
                )
        finally:
            await database.dispose()

    columns, primary_key, dialect = asyncio.run(reflect())
    assert [c["name"] for c in columns] == [c.name for c in ratings.columns]
    assert all(not c["nullable"] for c in columns)
    assert primary_key["constrained_columns"] == ["user_id", "movie_id"]
    kinds = {c["name"]: type(c["type"]).__name__.upper() for c in columns}
    stamp = "BIGINT" if dialect == "sqlite" else "TIMESTAMP"
    assert kinds["user_id"] == kinds["movie_id"] == "BIGINT" and stamp in kinds["rated_at"], kinds


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"

    async def pragmas() -> tuple:
        await migrate(url)
        database = Database(url, timeout_s=5)
        try:
            async with database.reading() as connection:
                mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
                sync = (await connection.execute(text("PRAGMA synchronous"))).scalar()
                return mode, sync
        finally:
            await database.dispose()

    assert asyncio.run(pragmas()) == ("wal", 2)  # 2 = FULL


@pytest.mark.anyio
async def test_a_store_started_while_postgresql_is_down_migrates_once_it_is_back(postgres):
    postgres.ensure_running()
    url = postgres.new_database()
    postgres.stop()
    store = FeedbackStore(url, timeout_s=2.0, check_interval_s=0.1)
    try:
        await store.start()
        assert not store.available
        postgres.start()
        for _ in range(100):
            if store.available:
                break
            await asyncio.sleep(0.1)
        assert store.available
        assert (await store.put(1, 2, 3.5)).rating == 3.5
    finally:
        postgres.ensure_running()
        await store.close()
