"""The ratings table: one rating per user and movie, with when it was given.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_ID = 2**53 - 1


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("movie_id", sa.BigInteger(), nullable=False),
        sa.Column("rating", sa.Float(), nullable=False),
        # timestamptz on PostgreSQL; integer microseconds since 1970 (UTC) on SQLite.
        sa.Column(
            "rated_at", sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite"), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", "movie_id", name="ratings_pkey"),
        sa.CheckConstraint(f"user_id BETWEEN 1 AND {MAX_ID}", name="ratings_user_id_range"),
        sa.CheckConstraint(f"movie_id BETWEEN 1 AND {MAX_ID}", name="ratings_movie_id_range"),
        # Half stars from 0.5 to 5: twice the rating is a whole number from 1 to 10.
        sa.CheckConstraint(
            "rating * 2 BETWEEN 1 AND 10 AND rating * 2 = CAST(rating * 2 AS INTEGER)",
            name="ratings_half_stars",
        ),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("ratings")
