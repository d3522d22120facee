"""The feedback database: which one, its engine and connections, and its schema migrations.

SQLite by default (a file under `STATE_DIR`), PostgreSQL when `DATABASE_URL` says so, both
through SQLAlchemy's asyncio extension (aiosqlite, asyncpg), so no call blocks the event loop.

Durability: a write returns only once committed. SQLite runs in WAL mode with `synchronous=FULL`
(the log is fsynced at every commit); PostgreSQL commits with its defaults (`fsync`,
`synchronous_commit=on`).

Concurrency: SQLite has one writer at a time. Its write transactions start with
`BEGIN IMMEDIATE`, which takes the write lock up front (waiting up to the busy timeout for
another process), so a transaction never fails half-way on a lock it could not upgrade; inside
one process, writers queue on an asyncio lock instead of polling the file lock. Reads run
outside any transaction (one statement, autocommit) on both databases: one round trip.

Migrations (Alembic, `migrations/`) run in one transaction under a lock, so several processes
may start at once: PostgreSQL takes a transaction-scoped advisory lock, SQLite's
`BEGIN IMMEDIATE` is the lock. The first process upgrades; the others wait, then find the
schema at head and do nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import URL, event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

SQLITE_FILE = "feedback.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit number: the key of the PostgreSQL advisory lock held while migrating.
MIGRATION_LOCK_KEY = 0x6665_6564_6261_636B  # "feedback"
# Limits for migrations, which may legitimately wait for another process's migration.
MIGRATION_TIMEOUT_S = 600.0
DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}
# The execution option naming the statement that opens a SQLite transaction (None: no transaction).
SQLITE_BEGIN = "feedback_sqlite_begin"


def sqlite_path(state_dir: Path) -> Path:
    """The SQLite feedback database under `STATE_DIR` (the default without `DATABASE_URL`)."""
    return state_dir / SQLITE_FILE


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def async_url(database_url: str) -> URL:
    """The URL with its asyncio driver: `postgresql://` → asyncpg, `sqlite:///` → aiosqlite.

    Raises ValueError for any other database or driver.
    """
    accepted = "use postgresql://user:password@host:port/database or sqlite:///path/to/file.db"
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise ValueError(f"not a database URL: {accepted}") from None
    backend, _, given_driver = url.drivername.partition("+")
    backend = "postgresql" if backend == "postgres" else backend
    driver = DRIVERS.get(backend)
    if driver is None or given_driver not in ("", driver):
        raise ValueError(accepted)
    return url.set(drivername=f"{backend}+{driver}")


def describe(url: URL) -> str:
    """The URL without its password, for logs."""
    return url.render_as_string(hide_password=True)


class Database:
    """One engine and its ways in: `reading()` (autocommit), `writing()` (a transaction), `snapshot()`.

    `timeout_s` bounds connecting, waiting for a pooled connection or a lock, and each statement;
    `migrating` lifts all but the first to `MIGRATION_TIMEOUT_S`, as a migration may wait for
    another process's. Callers bound whole calls themselves (see `FeedbackStore`).
    """

    def __init__(self, database_url: str, *, timeout_s: float, migrating: bool = False) -> None:
        self.url = async_url(database_url)
        self.dialect = self.url.get_backend_name()
        limit = MIGRATION_TIMEOUT_S if migrating else timeout_s
        if self.dialect == "sqlite":
            self.engine = create_async_engine(self.url, pool_size=4, max_overflow=4, pool_timeout=limit)
            _configure_sqlite(self.engine.sync_engine, busy_timeout_s=limit)
            self._reader = self.engine.execution_options(**{SQLITE_BEGIN: None})
            self._writer = self.engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
            self._write_gate: contextlib.AbstractAsyncContextManager[Any] = asyncio.Lock()
        else:
            self.engine = create_async_engine(
                self.url,
                pool_size=10,
                max_overflow=10,
                pool_timeout=limit,
                connect_args={
                    "timeout": timeout_s,
                    "command_timeout": limit,
                    "server_settings": {"application_name": "movie-recommender"},
                },
            )
            self._reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self._writer = self.engine
            self._write_gate = contextlib.nullcontext()

    def _create_sqlite_folder(self) -> None:
        database = self.url.database
        if (
            self.dialect == "sqlite"
            and database
            and database != ":memory:"
            and not database.startswith("file:")
        ):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A connection outside any transaction: each statement stands alone."""
        async with self._reader.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A transaction, committed when the block ends (durably: see the module's docstring)."""
        async with self._write_gate, self._writer.begin() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for reading: a long read, or statements that belong together."""
        async with self.engine.connect() as connection:
            yield connection

    async def upgrade(self) -> None:
        """Migrates the schema to the newest revision, under the migration lock."""
        self._create_sqlite_folder()
        async with self.writing() as connection:
            if self.dialect == "postgresql":
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                await connection.execute(lock, {"key": MIGRATION_LOCK_KEY})
            await connection.run_sync(_alembic_upgrade)

    async def revision(self) -> str | None:
        """The schema revision the database is at (None before the first migration)."""
        async with self.snapshot() as connection:
            return await connection.run_sync(_alembic_revision)

    async def dispose(self) -> None:
        await self.engine.dispose()


async def migrate(database_url: str, connect_timeout_s: float = 10.0) -> str | None:
    """Brings the database's schema to the newest revision; returns that revision."""
    database = Database(database_url, timeout_s=connect_timeout_s, migrating=True)
    try:
        await database.upgrade()
        return await database.revision()
    finally:
        await database.dispose()


def head_revision() -> str | None:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def _alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _alembic_upgrade(connection: Connection) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


def _alembic_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _configure_sqlite(engine: Any, busy_timeout_s: float) -> None:
    """WAL, full sync and a busy timeout on every connection; SQLAlchemy emits BEGIN itself.

    The driver's own transaction handling is turned off (`isolation_level = None`) so that the
    `begin` hook decides: plain reads run without a transaction, writes start with
    `BEGIN IMMEDIATE` (SQLAlchemy's documented recipe for SQLite transactions).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {round(busy_timeout_s * 1000)}")
        _switch_to_wal(cursor, busy_timeout_s)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        statement = connection.get_execution_options().get(SQLITE_BEGIN, "BEGIN")
        if statement:
            connection.exec_driver_sql(statement)


def _switch_to_wal(cursor: Any, within_s: float) -> None:
    """`PRAGMA journal_mode = WAL`, retried: switching a new file's mode needs an exclusive lock,
    and SQLite answers "database is locked" at once, without its busy handler, while another
    process is doing the same (two servers, or a server and training, starting together)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
