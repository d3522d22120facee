"""The feedback table as the store queries it, and the limits every writer checks.

The table itself is created and changed only by the Alembic migrations in `migrations/`; this
module describes it for queries. One row per (user, movie): writing again replaces the rating.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Dialect, Float, MetaData, Table
from sqlalchemy.types import TypeDecorator, TypeEngine

RATING_MIN = 0.5
RATING_MAX = 5.0
RATING_STEP = 0.5
# The largest integer a JSON number carries exactly (JavaScript's Number.MAX_SAFE_INTEGER).
MAX_ID = 2**53 - 1

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class UtcTimestamp(TypeDecorator[datetime]):
    """An instant in UTC: `timestamptz` on PostgreSQL, integer microseconds since 1970 on SQLite.

    SQLite has no date type; SQLAlchemy's default there (ISO text, time zone dropped, parsed by a
    regular expression on every read) is slower and loses the zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        return (value - EPOCH) // MICROSECOND

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None or dialect.name != "sqlite":
            return value
        return EPOCH + value * MICROSECOND


metadata = MetaData()

ratings = Table(
    "ratings",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("movie_id", BigInteger, primary_key=True, autoincrement=False),
    Column("rating", Float, nullable=False),
    Column("rated_at", UtcTimestamp, nullable=False),
)


def valid_rating(stars: float) -> bool:
    """0.5 to 5 stars in half stars."""
    return RATING_MIN <= stars <= RATING_MAX and (stars / RATING_STEP).is_integer()


def valid_id(value: int) -> bool:
    return 1 <= value <= MAX_ID
