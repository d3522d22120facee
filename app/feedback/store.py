"""The feedback store: ratings people give through the API, kept in the feedback database.

Knows nothing of models, bundles or scoring: it stores (user, movie, rating, when) rows and
answers questions about them. Every call is bounded by `timeout_s`; a database that is down,
refuses, or does not answer in time raises `FeedbackUnavailable`, the one exception callers
handle. The store remembers whether its last call worked (`available`), and a background check
keeps that current while no request comes, so readiness can be answered without waiting on the
database. When the database returns, the next call (or check) simply works: a connection that
died meanwhile is dropped and the call tried once more on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from sqlalchemy import bindparam, delete, exc, func, select, text
from sqlalchemy.dialects import postgresql, sqlite

from app.feedback.db import Database, describe, migrate
from app.feedback.schema import ratings, valid_id, valid_rating
from app.logs import log

if TYPE_CHECKING:
    from app.settings import DatabaseSettings

Result = TypeVar("Result")
EXPORT_PARTITION = 50_000


class FeedbackUnavailable(Exception):
    """The feedback database is down, unreachable, or did not answer within the timeout."""


@dataclass(frozen=True, slots=True)
class StoredRating:
    """One stored rating of a user (whose id is where it was looked up)."""

    movie_id: int
    rating: float
    rated_at: datetime


@dataclass(frozen=True)
class ExportedRatings:
    """Every stored rating as columns, for training."""

    user_ids: np.ndarray  # int64
    movie_ids: np.ndarray  # int64
    ratings: np.ndarray  # float32
    newest: datetime | None

    def __len__(self) -> int:
        return len(self.user_ids)


class FeedbackStore:
    """Stored ratings: reads for the hot path, idempotent writes, and the database's health."""

    def __init__(self, database_url: str, *, timeout_s: float = 2.0, check_interval_s: float = 5.0) -> None:
        self._database_url = database_url
        self._db = Database(database_url, timeout_s=timeout_s)
        self.timeout_s = timeout_s
        self.check_interval_s = check_interval_s
        self.description = describe(self._db.url)
        self._available = False
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._last_problem: str | None = None
        users = bindparam("user_ids", expanding=True)
        columns = (ratings.c.movie_id, ratings.c.rating, ratings.c.rated_at)
        self._select_users = (
            select(ratings.c.user_id, *columns)
            .where(ratings.c.user_id.in_(users))
            .order_by(ratings.c.user_id, ratings.c.movie_id)
        )
        self._select_pairs = select(*columns).where(
            ratings.c.user_id == bindparam("user_id"),
            ratings.c.movie_id.in_(bindparam("movie_ids", expanding=True)),
        )
        insert = (postgresql if self._db.dialect == "postgresql" else sqlite).insert(ratings)
        # The same rating again changes nothing (rated_at included): the update's WHERE is false,
        # so the row is neither rewritten nor returned, and is read back instead.
        self._upsert = insert.on_conflict_do_update(
            index_elements=[ratings.c.user_id, ratings.c.movie_id],
            set_={"rating": insert.excluded.rating, "rated_at": insert.excluded.rated_at},
            where=ratings.c.rating != insert.excluded.rating,
        ).returning(*columns)
        self._delete = (
            delete(ratings)
            .where(ratings.c.user_id == bindparam("user_id"), ratings.c.movie_id == bindparam("movie_id"))
            .returning(ratings.c.movie_id)
        )

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> FeedbackStore:
        return cls(
            settings.feedback_database_url(),
            timeout_s=settings.database_timeout_s,
            check_interval_s=settings.database_check_interval_s,
        )

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self._db.dialect

    @property
    def available(self) -> bool:
        """Whether the last call or check reached the database (False until `start`)."""
        return self._available

    # ------------------------------------------------------------------------------------------
    # Life cycle and health

    async def start(self) -> None:
        """Migrates the schema and starts the background check; never raises for an outage.

        A database that is down at start-up leaves the store unavailable (writes answer 503);
        the background check retries the migration until it succeeds.
        """
        await self.check()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="feedback-check")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._db.dispose()

    async def migrate(self) -> None:
        """Brings the schema to the newest revision; raises `FeedbackUnavailable` if it cannot."""
        async with self._schema_lock:
            if self._schema_ready:
                return
            try:
                await migrate(self._database_url, connect_timeout_s=self.timeout_s)
            except Exception as error:  # an outage, or a schema this code cannot migrate
                self._set_available(False, error)
                reason = f"cannot migrate the feedback database ({_one_line(error)})"
                raise FeedbackUnavailable(reason) from error
            self._schema_ready = True

    async def check(self) -> bool:
        """Reaches the database once (migrating first if need be); returns and records the outcome."""
        try:
            if not self._schema_ready:
                await self.migrate()
            await self._call(self._ping)
        except FeedbackUnavailable:
            return False
        return True

    async def _ping(self) -> None:
        async with self._db.reading() as connection:
            await connection.execute(text("SELECT 1"))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            await self.check()

    # ------------------------------------------------------------------------------------------
    # Reads

    async def ratings_of(self, user_ids: Sequence[int]) -> dict[int, list[StoredRating]]:
        """Every stored rating of these users, in one query: {user_id: ratings by movie id}.

        Each requested user is a key, with an empty list when nothing is stored for them.
        """
        wanted = list(dict.fromkeys(int(u) for u in user_ids))
        found: dict[int, list[StoredRating]] = {user_id: [] for user_id in wanted}
        if not wanted:
            return found

        async def read() -> None:
            async with self._db.reading() as connection:
                result = await connection.execute(self._select_users, {"user_ids": wanted})
                for user_id, movie_id, rating, rated_at in result:
                    found[user_id].append(StoredRating(movie_id, rating, rated_at))

        await self._call(read)
        return found

    async def export(self) -> ExportedRatings:
        """Every stored rating, read as one snapshot, with no time limit (for training)."""
        query = select(ratings.c.user_id, ratings.c.movie_id, ratings.c.rating).order_by(
            ratings.c.user_id, ratings.c.movie_id
        )

        async def read() -> ExportedRatings:
            parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
            async with self._db.snapshot() as connection:
                result = await connection.stream(query)
                async for rows in result.partitions(EXPORT_PARTITION):
                    users, movies, stars = zip(*rows, strict=True)
                    parts.append(
                        (np.array(users, np.int64), np.array(movies, np.int64), np.array(stars, np.float32))
                    )
                newest = (await connection.execute(select(func.max(ratings.c.rated_at)))).scalar()
            if not parts:
                return ExportedRatings(
                    np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), None
                )
            users, movies, stars = (np.concatenate(column) for column in zip(*parts, strict=True))
            return ExportedRatings(users, movies, stars, newest)

        return await self._call(read, limited=False)

    # ------------------------------------------------------------------------------------------
    # Writes

    async def put(self, user_id: int, movie_id: int, rating: float) -> StoredRating:
        """Stores or replaces one rating; the same rating again keeps the row and its rated_at."""
        (stored,) = await self.put_many(user_id, [(movie_id, rating)])
        return stored

    async def put_many(self, user_id: int, items: Sequence[tuple[int, float]]) -> list[StoredRating]:
        """Stores (movie_id, rating) pairs of one user in one transaction: all or none.

        Returns what is stored afterwards, in the order given. Raises ValueError for an id or
        rating out of range or a movie listed twice (callers validate first; this is the backstop).
        """
        _check(user_id, items)
        rated_at = datetime.now(UTC)
        # Rows in movie order: concurrent transactions lock rows in the same order (no deadlock).
        rows = [
            {"user_id": user_id, "movie_id": movie_id, "rating": float(rating), "rated_at": rated_at}
            for movie_id, rating in sorted(items)
        ]

        async def write() -> dict[int, StoredRating]:
            async with self._db.writing() as connection:
                stored = _by_movie(await connection.execute(self._upsert, rows))
                unchanged = [row["movie_id"] for row in rows if row["movie_id"] not in stored]
                if unchanged:
                    kept = await connection.execute(
                        self._select_pairs, {"user_id": user_id, "movie_ids": unchanged}
                    )
                    stored.update(_by_movie(kept))
            return stored

        stored = await self._call(write)
        return [stored[movie_id] for movie_id, _ in items]

    async def delete(self, user_id: int, movie_id: int) -> bool:
        """Removes a stored rating; False when there was none."""

        async def remove() -> bool:
            async with self._db.writing() as connection:
                result = await connection.execute(self._delete, {"user_id": user_id, "movie_id": movie_id})
                return result.first() is not None

        return await self._call(remove)

    # ------------------------------------------------------------------------------------------

    async def _call(
        self,
        operation: Callable[[], Awaitable[Result]],
        *,
        limited: bool = True,
    ) -> Result:
        """Runs one database operation within the timeout, mapping outages to FeedbackUnavailable."""
        if not self._schema_ready:
            raise FeedbackUnavailable("the feedback database has not been migrated yet; retry shortly")
        try:
            async with asyncio.timeout(self.timeout_s if limited else None):
                try:
                    result = await operation()
                except exc.DBAPIError as error:
                    if not error.connection_invalidated:
                        raise
                    # A pooled connection had died (the database restarted): once more, on a new one.
                    result = await operation()
        except Exception as error:
            if not _is_outage(error):
                raise
            self._set_available(False, error)
            raise FeedbackUnavailable(f"the feedback database is unavailable ({_one_line(error)})") from error
        self._set_available(True)
        return result

    def _set_available(self, available: bool, error: BaseException | None = None) -> None:
        problem = None if error is None else _one_line(error)
        if available != self._available or (problem and problem != self._last_problem):
            if available:
                log("feedback database available", database=self.description)
            else:
                log("feedback database unavailable", logging.ERROR, database=self.description, reason=problem)
        self._available, self._last_problem = available, problem


def _check(user_id: int, items: Sequence[tuple[int, float]]) -> None:
    if not valid_id(user_id):
        raise ValueError(f"user_id {user_id} is out of range")
    if not items:
        raise ValueError("no ratings given")
    seen: set[int] = set()
    for movie_id, rating in items:
        if not valid_id(movie_id):
            raise ValueError(f"movie_id {movie_id} is out of range")
        if not valid_rating(rating):
            raise ValueError(f"rating {rating} is not 0.5 to 5 in half stars")
        if movie_id in seen:
            raise ValueError(f"movie_id {movie_id} is listed twice")
        seen.add(movie_id)


def _by_movie(rows: Iterable[tuple[int, float, datetime]]) -> dict[int, StoredRating]:
    # float(): SQLite's RETURNING hands back 3.0 as the integer 3.
    return {movie_id: StoredRating(movie_id, float(rating), rated_at) for movie_id, rating, rated_at in rows}


def _is_outage(error: BaseException) -> bool:
    """Whether an error means the database cannot be used now, rather than a bad statement."""
    if isinstance(error, exc.IntegrityError | exc.DataError | exc.ProgrammingError):
        return False
    return isinstance(error, exc.DBAPIError | exc.TimeoutError | OSError | TimeoutError)


def _one_line(error: BaseException) -> str:
    if isinstance(error, TimeoutError) and not str(error):
        return "no answer within the timeout"
    if isinstance(error, exc.DBAPIError):
        error = error.orig or error
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
