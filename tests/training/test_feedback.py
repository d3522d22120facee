"""Training learns from stored feedback: which database, how it merges, what the bundle says."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from app.bundle import load_bundle
from app.bundle_store import current_bundle_path
from app.feedback import ExportedRatings, FeedbackStore
from app.feedback.db import sqlite_url
from tests.support.bundles import snapshot
from tests.support.training import train
from training.data import MovieLens
from training.feedback import feedback_database_url, merge_feedback

MOVIES = pd.DataFrame({"movieId": [10, 20, 30], "title": ["a", "b", "c"], "genres": ["x", "y", "z"]})


def movielens(rows: list[tuple[int, int, float]]) -> MovieLens:
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating"]).astype({"rating": np.float32})
    return MovieLens(ratings, MOVIES.set_index("movieId", drop=False), "test", "0" * 64)


def exported(rows: list[tuple[int, int, float]]) -> ExportedRatings:
    users, movies, stars = (np.array(column) for column in zip(*rows, strict=True)) if rows else ([], [], [])
    newest = datetime(2026, 11, 30, tzinfo=UTC) if rows else None
    return ExportedRatings(
        np.asarray(users, np.int64), np.asarray(movies, np.int64), np.asarray(stars, np.float32), newest
    )


def test_a_stored_rating_replaces_the_data_sets_in_place_and_new_pairs_are_appended():
    data = movielens([(1, 10, 4.0), (2, 10, 3.0), (1, 20, 2.0)])
    merged, counts = merge_feedback(data, exported([(1, 20, 5.0), (3, 30, 1.5), (2, 99, 4.0), (1, 30, 0.5)]))
    assert merged.ratings.values.tolist() == [
        [1, 10, 4.0],
        [2, 10, 3.0],
        [1, 20, 5.0],  # replaced where it stood: the data set keeps its order
        [3, 30, 1.5],
        [1, 30, 0.5],
    ]
    assert merged.ratings["rating"].dtype == np.float32 and merged.movies is data.movies
    assert counts == {
        "ratings_from_dataset": 2,
        "ratings_from_feedback": 3,
        "feedback_replacing_dataset": 1,
        "feedback_ignored_unknown_movies": 1,  # movie 99 is not in movies.csv
        "feedback_newest": "2026-11-30T00:00:00+00:00",
    }


@pytest.mark.parametrize("stored", [None, exported([])])
def test_without_feedback_the_data_set_is_untouched(stored):
    data = movielens([(1, 10, 4.0), (2, 20, 3.0)])
    merged, counts = merge_feedback(data, stored)
    assert merged is data
    assert counts["ratings_from_dataset"] == 2 and counts["ratings_from_feedback"] == 0


def test_the_database_is_the_flag_else_the_servers_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert feedback_database_url(None) is None, "no SQLite file yet: nothing stored"
    (tmp_path / "feedback.db").touch()
    assert feedback_database_url(None) == sqlite_url(tmp_path / "feedback.db")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db/feedback")
    assert feedback_database_url(None) == "postgresql://u@db/feedback"
    assert feedback_database_url("sqlite:////elsewhere.db") == "sqlite:////elsewhere.db"


async def store_ratings(url: str, rows: dict[int, list[tuple[int, float]]]) -> None:
    store = FeedbackStore(url, timeout_s=5)
    await store.start()
    try:
        for user_id, items in rows.items():
            await store.put_many(user_id, items)
    finally:
        await store.close()


def test_the_next_bundle_learns_from_stored_ratings(feedback_url, tiny_data_dir, tiny_ratings, tmp_path):
    first = tiny_ratings.iloc[0]
    user, movie = int(first["userId"]), int(first["movieId"])
    replaced = 0.5 if first["rating"] != 0.5 else 5.0
    newcomer, movies = 424242, tiny_ratings["movieId"].unique()[:3].tolist()
    asyncio.run(
        store_ratings(
            feedback_url,
            {user: [(movie, replaced)], newcomer: [(m, 4.5) for m in movies] + [(777777777, 3.0)]},
        )
    )
    model_dir = tmp_path / "models"
    assert train(tiny_data_dir, model_dir, "--members", "1", "--database-url", feedback_url) == 0
    bundle = load_bundle(current_bundle_path(model_dir))
    data = bundle.metadata.model_dump()["data"]
    assert data["ratings_from_dataset"] == len(tiny_ratings) - 1
    assert data["ratings_from_feedback"] == 4 and data["feedback_replacing_dataset"] == 1
    assert data["feedback_ignored_unknown_movies"] == 1
    assert data["ratings"] == len(tiny_ratings) + 3
    row = bundle.encoders.users.index(newcomer)
    rated, stars = bundle.ratings.of(row)
    assert sorted(bundle.encoders.movies[m] for m in rated) == sorted(movies) and set(stars.tolist()) == {4.5}
    rated, stars = bundle.ratings.of(bundle.encoders.users.index(user))
    assert stars[[bundle.encoders.movies[m] for m in rated].index(movie)] == replaced


def test_an_unreachable_database_fails_the_run_in_one_line_and_keeps_current(
    tmp_path, tiny_data_dir, model_dir_copy, capsys
):
    before = snapshot(model_dir_copy)
    unreachable = f"postgresql://nobody@/feedback?host={tmp_path}&port=5432"
    assert train(tiny_data_dir, model_dir_copy, "--database-url", unreachable) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("training failed:") and "feedback database" in err and "\n" not in err, err
    assert snapshot(model_dir_copy) == before


def test_no_feedback_trains_on_the_data_set_alone(tmp_path, tiny_data_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://nobody@/feedback?host={tmp_path}&port=5432")
    model_dir = tmp_path / "models"
    assert train(tiny_data_dir, model_dir, "--members", "1", "--no-feedback") == 0
    data = load_bundle(current_bundle_path(model_dir)).metadata.model_dump()["data"]
    assert data["ratings_from_feedback"] == 0 and data["ratings_from_dataset"] == data["ratings"]
