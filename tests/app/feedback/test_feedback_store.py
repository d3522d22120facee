"""The feedback store against real databases: each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import event

from app.feedback import FeedbackStore, FeedbackUnavailable, StoredRating
from app.feedback import store as store_module

pytestmark = pytest.mark.anyio


def count_statements(store: FeedbackStore) -> list[str]:
    """Every SQL statement the store sends from now on (appended as it is sent)."""
    sent: list[str] = []
    engine = store._db.engine.sync_engine

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        sent.append(statement)

    return sent


async def test_put_stores_and_the_same_rating_again_keeps_the_row(store):
    first = await store.put(7, 318, 4.5)
    assert (first.movie_id, first.rating) == (318, 4.5)
    assert first.rated_at.tzinfo is not None and abs(first.rated_at - datetime.now(UTC)).total_seconds() < 60
    again = await store.put(7, 318, 4.5)
    assert again == first, "the same value again must keep the row and its rated_at"
    changed = await store.put(7, 318, 2.0)
    assert changed.rating == 2.0 and changed.rated_at > first.rated_at
    assert await store.ratings_of([7]) == {7: [changed]}


async def test_ratings_of_many_users_is_one_select(store):
    await store.put_many(1, [(10, 1.0), (11, 1.5)])
    await store.put_many(2, [(10, 5.0)])
    await store.put(3, 12, 3.0)
    sent = count_statements(store)
    found = await store.ratings_of([2, 1, 99, 2])
    assert len(sent) == 1 and sent[0].lstrip().upper().startswith("SELECT"), sent
    assert list(found) == [2, 1, 99], "every requested user once, in request order"
    assert [(r.movie_id, r.rating) for r in found[1]] == [(10, 1.0), (11, 1.5)]
    assert [(r.movie_id, r.rating) for r in found[2]] == [(10, 5.0)]
    assert found[99] == []
    assert all(isinstance(r, StoredRating) for rs in found.values() for r in rs)
    assert await store.ratings_of([]) == {} and len(sent) == 1, "no users, no query"


async def test_ratings_of_a_full_micro_batch_is_fast(store):
    for user in range(1, 65):
        await store.put_many(user, [(movie, 0.5 + (user + movie) % 10 / 2) for movie in range(1, 21)])
    started = time.perf_counter()
    for _ in range(20):
        found = await store.ratings_of(range(1, 65))
    per_call = (time.perf_counter() - started) / 20
    assert sum(map(len, found.values())) == 64 * 20
    assert per_call < 0.1, f"{per_call * 1000:.1f} ms for 64 users x 20 ratings"


async def test_put_many_answers_in_request_order_and_keeps_unchanged_rows(store):
    kept = await store.put(5, 30, 3.0)
    stored = await store.put_many(5, [(40, 4.0), (30, 3.0), (20, 2.0)])
    assert [(s.movie_id, s.rating) for s in stored] == [(40, 4.0), (30, 3.0), (20, 2.0)]
    assert stored[1] == kept, "an unchanged rating keeps its rated_at"
    assert stored[0].rated_at == stored[2].rated_at > kept.rated_at, "one transaction, one time"


async def test_put_many_is_all_or_none(store, monkeypatch):
    await store.put(5, 1, 1.0)
    # Past the store's own checks, the database's constraint refuses the 7 stars mid-statement.
    monkeypatch.setattr(store_module, "_check", lambda user_id, items: None)
    with pytest.raises(Exception) as raised:
        await store.put_many(5, [(1, 5.0), (2, 2.0), (3, 7.0)])
    assert not isinstance(raised.value, FeedbackUnavailable), "a refused row is not an outage"
    assert [(r.movie_id, r.rating) for r in (await store.ratings_of([5]))[5]] == [(1, 1.0)]
    assert store.available


@pytest.mark.parametrize(
    ("user_id", "items"),
    [
        (0, [(1, 4.0)]),
        (2**53, [(1, 4.0)]),
        (1, [(0, 4.0)]),
        (1, [(1, 4.25)]),
        (1, [(1, 5.5)]),
        (1, [(1, float("nan"))]),
        (1, [(1, 4.0), (1, 3.0)]),
        (1, []),
    ],
)
async def test_put_many_refuses_bad_input_itself(store, user_id, items):
    with pytest.raises(ValueError):
        await store.put_many(user_id, items)
    assert await store.ratings_of([user_id]) == {user_id: []}


async def test_delete_removes_one_rating(store):
    await store.put_many(9, [(1, 1.0), (2, 2.0)])
    assert await store.delete(9, 1) is True
    assert await store.delete(9, 1) is False
    assert [r.movie_id for r in (await store.ratings_of([9]))[9]] == [2]


async def test_the_same_pair_written_concurrently_ends_as_one_row_with_one_value(store):
    values = [0.5 + i / 2 for i in range(10)]
    written = await asyncio.gather(*(store.put(4, 99, value) for value in values * 3))
    (row,) = (await store.ratings_of([4]))[4]
    assert row.rating in values and row in written


async def test_export_gives_every_rating_as_columns(store):
    assert len(await store.export()) == 0
    await store.put_many(2, [(5, 5.0), (3, 3.0)])
    last = await store.put(1, 7, 0.5)
    exported = await store.export()
    assert exported.user_ids.tolist() == [1, 2, 2]
    assert exported.movie_ids.tolist() == [7, 3, 5]
    assert exported.ratings.tolist() == [0.5, 3.0, 5.0]
    assert exported.newest == last.rated_at


async def test_a_database_that_cannot_be_reached_makes_the_store_unavailable_not_broken(tmp_path, postgres):
    for url in (
        postgres.url("postgres").replace(str(postgres.root), str(tmp_path)),  # no server at that socket
        f"sqlite:///{tmp_path / 'a-file' / 'feedback.db'}",  # its folder cannot be created
    ):
        (tmp_path / "a-file").write_text("in the way")
        store = FeedbackStore(url, timeout_s=1.0, check_interval_s=60)
        started = time.monotonic()
        await store.start()
        try:
            assert not store.available
            with pytest.raises(FeedbackUnavailable):
                await store.ratings_of([1])
            with pytest.raises(FeedbackUnavailable):
                await store.put(1, 1, 1.0)
            assert time.monotonic() - started < 5
        finally:
            await store.close()
