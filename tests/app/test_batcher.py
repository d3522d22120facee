"""Micro-batching: merged calls, each item gets exactly its own result, a full queue refuses."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.batcher import Batched, MicroBatcher, Overloaded

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
    with pytest.raises(Overloaded):  # at once: admitted, it would wait for the release (a hang)
        await within(1, merged.submit(4))
    release.set()
    assert [(await f).value for f in (first, *queued)] == [1, 2, 3]
    await merged.stop()


async def test_items_arriving_within_the_window_share_one_batch():
    """The window is what merges requests that do not arrive together; 50 ms into 2 s is well inside."""
    calls: list[list[int]] = []

    def process(items):
        calls.append(list(items))
        return list(items)

    merged = batcher(process, window=2.0, max_items=2)
    merged.start()
    first = asyncio.ensure_future(merged.submit(1))
    await asyncio.sleep(0.05)
    second = asyncio.ensure_future(merged.submit(2))
    assert [(await within(5, f)).value for f in (first, second)] == [1, 2]
    await merged.stop()
    assert calls == [[1, 2]], "the second item arrived within the window, so it joins the first"


@given(
    delays=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    max_items=st.integers(1, 8),
    window=st.sampled_from([0, 0.001, 0.003]),
)
@settings(max_examples=40, deadline=None)
def test_each_request_gets_exactly_its_own_result_whatever_the_interleaving(delays, max_items, window):
    """Requests arriving at any moments, in batches of any size: each result is its own item's."""

    async def scenario() -> tuple[list[Batched[tuple[int, int]]], list[list[int]]]:
        calls: list[list[int]] = []

        def process(items):
            calls.append(list(items))
            return [(item, item * item) for item in items]

        merged = batcher(process, window=window, max_items=max_items)
        merged.start()

        async def ask(item: int) -> Batched[tuple[int, int]]:
            await asyncio.sleep(delays[item] / 1000)
            return await merged.submit(item)

        results = await within(10, asyncio.gather(*(ask(i) for i in range(len(delays)))))
        await merged.stop()
        return results, calls

    results, calls = asyncio.run(scenario())
    assert [r.value for r in results] == [(i, i * i) for i in range(len(delays))]
    assert sorted(i for call in calls for i in call) == list(range(len(delays)))
    assert all(len(call) <= max_items for call in calls)
    sizes = {i: len(call) for call in calls for i in call}
    assert [r.batch_size for r in results] == [sizes[i] for i in range(len(delays))]


async def within(seconds: float, awaitable):
    """The awaitable's result, or a failure saying it hung (a dead worker answers nothing)."""
    async with asyncio.timeout(seconds):
        return await awaitable


@pytest.mark.parametrize("fault", ["on_batch raises", "wrong number of results", "prepare raises"])
async def test_a_fault_anywhere_in_the_loop_fails_only_its_own_batch(fault):
    calls = {"n": 0}

    def process(items):
        if fault == "wrong number of results" and calls["n"] == 0:
            calls["n"] += 1
            return [*items, "extra"]
        return [i * 10 for i in items]

    def on_batch(size):
        if fault == "on_batch raises" and not calls["n"]:
            calls["n"] += 1
            raise RuntimeError("metrics backend gone")

    async def prepare(items):
        if fault == "prepare raises" and not calls["n"]:
            calls["n"] += 1
            raise RuntimeError("database gone")
        return items

    merged = batcher(process, window=0, max_items=1, on_batch=on_batch, prepare=prepare)
    merged.start()
    with pytest.raises(Exception):  # noqa: B017 - whichever error the fault raised
        await within(2, merged.submit(1))
    assert (await within(2, merged.submit(2))).value == 20
    assert merged.alive
    await merged.stop()


async def test_a_stopped_worker_fails_waiting_and_new_requests_and_says_so():
    release = threading.Event()
    merged = batcher(lambda items: release.wait(5) and list(items), window=0, max_items=1)
    merged.start()
    first = asyncio.ensure_future(merged.submit(1))
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(merged.submit(2))
    await asyncio.sleep(0)
    merged._worker.cancel()  # anything that ends the task: it must not go unnoticed
    release.set()
    with pytest.raises(Overloaded):
        await within(2, waiting)
    with pytest.raises(Overloaded):
        await within(2, merged.submit(3))
    assert not merged.alive
    first.cancel()
    await merged.stop()


async def test_admission_counts_work_not_requests():
    """A queue bound of 100 pairs: two 60-pair requests do not fit, one 150-pair request alone does."""
    release = threading.Event()

    def process(items):
        release.wait(5)
        return [len(i) for i in items]

    merged = batcher(process, window=0, max_items=1, max_queue=100, cost=len)
    merged.start()
    running = asyncio.ensure_future(merged.submit("x"))  # taken by the worker: no longer queued
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(merged.submit("p" * 60))
    await asyncio.sleep(0)
    assert merged.queued_work == 60
    with pytest.raises(Overloaded, match="60"):
        await merged.submit("p" * 60)
    queued.cancel()  # a client that went away gives its place back at once
    await asyncio.sleep(0)
    assert merged.queued_work == 0
    alone = asyncio.ensure_future(merged.submit("p" * 150))
    await asyncio.sleep(0)
    release.set()
    assert (await running).value == 1 and (await alone).value == 150
    await merged.stop()


async def test_a_batch_is_capped_by_work():
    calls: list[list[str]] = []
    release = threading.Event()

    def process(items):
        release.wait(5)
        calls.append(list(items))
        return [len(i) for i in items]

    merged = batcher(process, window=0.05, max_items=64, max_queue=1000, max_batch_work=100, cost=len)
    merged.start()
    results = [asyncio.ensure_future(merged.submit("p" * 40)) for _ in range(6)]
    await asyncio.sleep(0.1)
    release.set()
    await asyncio.gather(*results)
    await merged.stop()
    assert [len(call) for call in calls] == [2, 2, 2]  # 40 + 40 fits in 100; a third would not
