"""Micro-batching: merged calls, each item gets exactly its own result, a full queue refuses."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.batcher import MicroBatcher, Overloaded

pytestmark = pytest.mark.anyio


def batcher(process, **overrides) -> MicroBatcher:
    options = {"window": 0.005, "max_items": 8, "max_queue": 100, "executor": ThreadPoolExecutor(1)}
    return MicroBatcher(process, **{**options, **overrides})


async def test_each_item_gets_its_own_result_and_calls_are_merged():
    calls: list[list[int]] = []

    def square(items):
        calls.append(list(items))
        return [i * i for i in items]

    merged = batcher(square)
    merged.start()
    results = await asyncio.gather(*(merged.submit(i) for i in range(30)))
    await merged.stop()
    assert [r.value for r in results] == [i * i for i in range(30)]
    assert len(calls) < 30 and max(len(c) for c in calls) <= 8
    assert sorted(i for call in calls for i in call) == list(range(30))


async def test_an_error_fails_only_the_requests_of_its_batch():
    release = threading.Event()

    def process(items):
        release.wait(5)
        if "bad" in items:
            raise ValueError("bad item")
        return [f"ok {i}" for i in items]

    merged = batcher(process, window=0, max_items=1)
    merged.start()
    good = asyncio.ensure_future(merged.submit("a"))
    await asyncio.sleep(0.01)
    bad = asyncio.ensure_future(merged.submit("bad"))
    later = asyncio.ensure_future(merged.submit("b"))
    release.set()
    assert (await good).value == "ok a"
    with pytest.raises(ValueError, match="bad item"):
        await bad
    assert (await later).value == "ok b"
    await merged.stop()


async def test_a_full_queue_refuses_at_once():
    release = threading.Event()
    merged = batcher(lambda items: release.wait(5) and list(items), window=0, max_items=1, max_queue=2)
    merged.start()
    first = asyncio.ensure_future(merged.submit(1))
    await asyncio.sleep(0.01)  # the worker holds item 1; items 2 and 3 fill the queue
    queued = [asyncio.ensure_future(merged.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await merged.submit(4)
    release.set()
    assert [(await f).value for f in (first, *queued)] == [1, 2, 3]
    await merged.stop()
