"""Ratings stored through the API, merged into the data set so that the next bundle learns from them.

Which database: `--database-url`, else the server's settings (`DATABASE_URL`, else the SQLite
file under `STATE_DIR` if it exists; without one there is nothing stored yet). A stored rating
replaces the data set's for the same user and movie, in place, so that the data set keeps its
order (and, without feedback, the seed's split is exactly the seed's); stored ratings of new
(user, movie) pairs are appended. Stored ratings of movies absent from `movies.csv` cannot be
trained on (the bundle's catalogue is built from it) and are counted as ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from app.feedback import ExportedRatings, FeedbackStore
from app.feedback.db import sqlite_path, sqlite_url
from app.settings import DatabaseSettings
from training.data import MovieLens

KEYS = ["userId", "movieId"]


def feedback_database_url(given: str | None) -> str | None:
    """The database to read stored ratings from, or None when there is none yet."""
    if given:
        return given
    settings = DatabaseSettings()
    if settings.database_url:
        return settings.database_url
    path = sqlite_path(settings.state_dir)
    return sqlite_url(path) if path.is_file() else None


def read_feedback(database_url: str) -> ExportedRatings:
    """Every stored rating (migrating the schema first, as the server does at start-up).

    Raises `FeedbackUnavailable` when the database cannot be read.
    """

    async def read() -> ExportedRatings:
        timeout_s = DatabaseSettings().database_timeout_s
        store = FeedbackStore(database_url, timeout_s=max(timeout_s, 10.0))
        try:
            await store.migrate()
            return await store.export()
        finally:
            await store.close()

    return asyncio.run(read())


def merge_feedback(data: MovieLens, stored: ExportedRatings | None) -> tuple[MovieLens, dict[str, Any]]:
    """The data set with the stored ratings merged in, and counts for the bundle's metadata."""
    counts: dict[str, Any] = {
        "ratings_from_dataset": len(data.ratings),
        "ratings_from_feedback": 0,
        "feedback_replacing_dataset": 0,
        "feedback_ignored_unknown_movies": 0,
        "feedback_newest": None,
    }
    if stored is None or len(stored) == 0:
        return data, counts
    feedback = pd.DataFrame(
        {"userId": stored.user_ids, "movieId": stored.movie_ids, "rating": stored.ratings}
    )
    known = feedback["movieId"].isin(data.movies.index).to_numpy()
    feedback = feedback[known]
    ratings = data.ratings.reset_index(drop=True)
    # Only the rows of users with stored ratings can be replaced: match those alone (the data set
    # may hold millions of rows).
    positions = np.flatnonzero(ratings["userId"].isin(feedback["userId"].unique()).to_numpy())
    candidates = ratings.iloc[positions][KEYS].assign(position=positions)
    matched = candidates.merge(feedback, on=KEYS, how="inner")
    merged_stars = ratings["rating"].to_numpy(copy=True)
    merged_stars[matched["position"].to_numpy()] = matched["rating"].to_numpy(np.float32)
    replaced_pairs = pd.MultiIndex.from_frame(matched[KEYS])
    added = feedback[~pd.MultiIndex.from_frame(feedback[KEYS]).isin(replaced_pairs)]
    merged = pd.concat(
        [ratings.assign(rating=merged_stars), added.astype({"rating": np.float32})], ignore_index=True
    )
    counts.update(
        ratings_from_dataset=len(ratings) - len(matched),
        ratings_from_feedback=len(matched) + len(added),
        feedback_replacing_dataset=len(matched),
        feedback_ignored_unknown_movies=int((~known).sum()),
        feedback_newest=stored.newest.isoformat() if stored.newest else None,
    )
    return dataclasses.replace(data, ratings=merged), counts
