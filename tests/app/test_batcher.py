"""Micro-batching: merged calls, each item gets exactly its own result, a full queue refuses."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
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
    """The window is what merges requests that do not arrive together; 10 ms into half a second is
    well inside (and a window under a second is a window too)."""
    calls: list[list[int]] = []

    def process(items):
        calls.append(list(items))
        return list(items)

    merged = batcher(process, window=0.5, max_items=2)
    merged.start()
    first = asyncio.ensure_future(merged.submit(1))
    await asyncio.sleep(0.01)
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


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("on_batch raises", "metrics backend gone"),
        ("wrong number of results", "2 results for a batch of 1"),
        ("prepare raises", "database gone"),
    ],
)
async def test_a_fault_anywhere_in_the_loop_fails_only_its_own_batch(fault: str, message: str) -> None:
    """The failed batch's requests get the fault's own error (the log line says what went wrong)."""
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
    with pytest.raises(Exception) as failed:  # whichever error the fault raised
        await within(2, merged.submit(1))
    assert str(failed.value) == message
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


# --- added for the mutation survivors (README, Mutation testing) ---------------------------------


async def test_the_model_runs_on_the_executor_it_was_given() -> None:
    """The service hands every batcher one model thread so Keras calls never overlap; the loop's
    default executor would run them on any of its threads."""
    threads: list[str] = []

    def process(items: list) -> list:
        threads.append(threading.current_thread().name)
        return list(items)

    merged = batcher(process, executor=ThreadPoolExecutor(1, thread_name_prefix="the-model"))
    merged.start()
    await within(5, asyncio.gather(*(merged.submit(i) for i in range(3))))
    await merged.stop()
    assert threads and all(name.startswith("the-model") for name in threads)


async def test_on_batch_is_told_the_size_of_every_batch() -> None:
    """The service's batch-size histogram is fed by `on_batch`: one call per batch, its size."""
    calls: list[list[int]] = []
    sizes: list[int] = []

    def process(items: list) -> list:
        calls.append(list(items))
        return list(items)

    merged = batcher(process, on_batch=sizes.append)
    merged.start()
    await within(5, asyncio.gather(*(merged.submit(i) for i in range(20))))
    await merged.stop()
    assert sizes == [len(call) for call in calls]


async def test_the_worker_task_is_named_in_task_dumps() -> None:
    """`asyncio.all_tasks()` (a debugger, a hang report) shows which task is the model worker."""
    merged = batcher(lambda items: list(items))
    merged.start()
    names = {task.get_name() for task in asyncio.all_tasks()}
    await merged.stop()
    assert "micro-batcher" in names


async def test_a_batcher_never_started_refuses_requests_and_stops_quietly() -> None:
    """Between construction and `start` (a service still loading): not alive, not stopped either
    (readiness must not report a crash), requests refused with the reason, `stop` harmless."""
    merged = batcher(lambda items: list(items))
    assert not merged.alive and not merged.stopped
    with pytest.raises(Overloaded) as refused:
        await merged.submit(1)
    assert str(refused.value) == "the model worker has stopped"
    await within(2, merged.stop())


async def test_stopping_fails_every_request_as_a_shutdown_and_is_not_reported_as_a_crash() -> None:
    """On shutdown each request still waiting (on the model, handed off, formed, queued; after
    one batch was served, so its bookkeeping has run) gets a 503 that says so, the worker ends,
    and `on_stop` (a CRITICAL log line, a metric) is not called: only a worker that ends by itself
    is a crash."""
    release = threading.Event()
    reported: list[BaseException | None] = []

    def process(items: list) -> list:
        if items != [0]:
            release.wait(5)
        return list(items)

    merged = batcher(process, window=0, max_items=1, on_stop=reported.append)
    merged.start()
    assert (await within(5, merged.submit(0))).value == 0
    requests = []
    for item in range(1, 5):  # 1 on the model, 2 handed off, 3 formed and waiting, 4 queued
        requests.append(asyncio.ensure_future(merged.submit(item)))
        await asyncio.sleep(0.01)
    assert merged.queued == 1
    await within(2, merged.stop())
    release.set()
    for request in requests:
        with pytest.raises(Overloaded) as refused:
            await within(2, request)
        assert str(refused.value) == "the server is shutting down"
    assert merged.stopped and not merged.alive and merged.queued_work == 0
    assert reported == []


async def test_a_cancelled_request_gives_its_place_back_before_the_worker_takes_it() -> None:
    """A client that goes away while its item still waits in the window frees its work at once, and
    the batch formed later neither counts it twice nor computes it."""
    calls: list[list[str]] = []

    def process(items: list) -> list:
        calls.append(list(items))
        return [len(i) for i in items]

    merged = batcher(process, window=60, max_items=3, max_queue=100, cost=len)
    merged.start()
    first = asyncio.ensure_future(merged.submit("aa"))
    gone = asyncio.ensure_future(merged.submit("bbb"))
    await asyncio.sleep(0)
    assert merged.queued_work == 5
    gone.cancel()
    await asyncio.sleep(0)
    assert merged.queued_work == 2, "the cancelled item's 3 units are free before the window ends"
    last = asyncio.ensure_future(merged.submit("c"))  # the third item fills the batch: no 60 s wait
    assert [(await within(5, f)).value for f in (first, last)] == [2, 1]
    assert gone.cancelled()
    assert calls == [["aa", "c"]]
    assert merged.queued_work == 0
    await merged.stop()


@pytest.mark.parametrize(
    ("options", "items"),
    [
        ({"max_items": 2}, ["a", "b"]),
        ({"max_items": 64, "max_batch_work": 100, "cost": len}, ["p" * 50, "q" * 50]),
    ],
    ids=["by items", "by work, exactly"],
)
async def test_a_batch_that_fills_up_is_computed_without_waiting_out_its_window(options, items) -> None:
    """A window of a minute: only a batch that is full (items, or work up to and including the cap)
    ends it, and a cap met exactly still fits in one batch."""
    calls: list[list[str]] = []

    def process(batch: list) -> list:
        calls.append(list(batch))
        return list(batch)

    merged = batcher(process, window=60, max_queue=1000, **options)
    merged.start()
    results = await within(5, asyncio.gather(*(merged.submit(i) for i in items)))
    await merged.stop()
    assert [r.value for r in results] == items and calls == [items]


FULL_BY_WORK = ["x" * 10, "y" * 10, "z" * 10]  # three items that fill a batch of work 30


async def after_a_batch_of_three(process, max_items: int) -> MicroBatcher:
    """A started batcher with a window of a minute whose one batch so far took three items
    (`FULL_BY_WORK`, closed by its work cap, not by the recent-size rule)."""
    merged = batcher(process, window=60, max_items=max_items, max_queue=1000, max_batch_work=30, cost=len)
    merged.start()
    await within(5, asyncio.gather(*(merged.submit(item) for item in FULL_BY_WORK)))
    return merged


async def test_a_batch_closes_once_as_many_wait_as_the_largest_recent_batch_took() -> None:
    """Under steady load the same clients come back each round: once as many wait as the recent
    batches took, the window (a minute here) has nothing left to wait for. Fewer keep waiting."""
    calls: list[list[str]] = []

    def process(batch: list) -> list:
        calls.append(list(batch))
        return list(batch)

    merged = await after_a_batch_of_three(process, max_items=8)
    await within(5, asyncio.gather(*(merged.submit(item) for item in "abc")))
    two = [asyncio.ensure_future(merged.submit(item)) for item in "de"]
    await asyncio.sleep(0.05)
    assert not any(request.done() for request in two), "two of the three: the batch waits for more"
    third = await within(5, merged.submit("f"))
    assert [(await request).value for request in two] + [third.value] == ["d", "e", "f"]
    await merged.stop()
    assert calls == [FULL_BY_WORK, ["a", "b", "c"], ["d", "e", "f"]]


async def test_while_the_model_is_busy_a_batch_closes_only_when_full_or_at_its_window() -> None:
    """Closing at the recent size is for an idle model: while it computes, a batch closed early
    could not start sooner and would only be smaller. A full batch still closes at once."""
    release = threading.Event()
    calls: list[list[str]] = []
    heavy = "h" * 30  # fills a batch by work alone

    def process(batch: list) -> list:
        if batch == [heavy]:
            release.wait(5)
        calls.append(list(batch))
        return list(batch)

    merged = await after_a_batch_of_three(process, max_items=4)
    computing = asyncio.ensure_future(merged.submit(heavy))
    await asyncio.sleep(0.05)  # the heavy batch is on the model
    three = [asyncio.ensure_future(merged.submit(item)) for item in "abc"]
    await asyncio.sleep(0.05)
    assert calls == [FULL_BY_WORK], "as many as the last batches took, but the model is busy: wait"
    fourth = asyncio.ensure_future(merged.submit("d"))  # the batch is full: closed at once
    await asyncio.sleep(0.05)
    release.set()
    results = await within(5, asyncio.gather(computing, *three, fourth))
    await merged.stop()
    assert [r.value for r in results] == [heavy, "a", "b", "c", "d"]
    assert calls == [FULL_BY_WORK, [heavy], ["a", "b", "c", "d"]]


async def test_after_batches_of_one_a_lone_item_still_waits_out_its_window() -> None:
    """Batches of one say nothing about company: the next lone item waits for the window as
    before, and what arrives within it joins."""
    calls: list[list[str]] = []

    def process(batch: list) -> list:
        calls.append(list(batch))
        return list(batch)

    merged = batcher(process, window=1, max_items=8)
    merged.start()
    await within(5, merged.submit("a"))
    lone = asyncio.ensure_future(merged.submit("b"))
    await asyncio.sleep(0.05)
    company = asyncio.ensure_future(merged.submit("c"))
    assert [(await within(5, f)).value for f in (lone, company)] == ["b", "c"]
    await merged.stop()
    assert calls == [["a"], ["b", "c"]]


async def test_without_a_window_a_batch_is_what_had_arrived_when_the_worker_woke() -> None:
    """Window 0 means no waiting at all: an item submitted after the worker woke for the first one
    goes in the next batch instead of holding the first back."""
    calls: list[list[int]] = []

    def process(items: list) -> list:
        calls.append(list(items))
        return list(items)

    merged = batcher(process, window=0)
    merged.start()
    first = asyncio.ensure_future(merged.submit(1))
    await asyncio.sleep(0)  # item 1 is queued and the worker woken
    second = asyncio.ensure_future(merged.submit(2))
    assert [(await within(5, f)).value for f in (first, second)] == [1, 2]
    await merged.stop()
    assert calls == [[1], [2]]


async def test_while_the_model_is_busy_one_batch_waits_and_the_rest_keep_merging() -> None:
    """The hand-off between the stages holds one batch: while the model computes, one more batch is
    formed and waits, and later arrivals merge into the one after it instead of queueing as many
    small batches (which is how batches grow under load)."""
    release = threading.Event()
    calls: list[list[int]] = []

    def process(items: list) -> list:
        release.wait(5)
        calls.append(list(items))
        return list(items)

    merged = batcher(process, window=0)
    merged.start()
    requests = []
    for item in range(1, 6):  # 1 on the model, 2 handed off, 3 formed and waiting, 4 and 5 queued
        requests.append(asyncio.ensure_future(merged.submit(item)))
        await asyncio.sleep(0.01)
    release.set()
    assert [(await within(5, f)).value for f in requests] == [1, 2, 3, 4, 5]
    await merged.stop()
    assert calls == [[1], [2], [3], [4, 5]]


class Request:
    """An item that can be weakly referenced, to see whether the batcher still holds it."""


async def test_the_batcher_keeps_no_reference_to_requests_it_has_answered() -> None:
    """Every batch, answered or failed, is let go: a long-running server must not hold on to every
    request it ever served."""

    def on_batch(size: int) -> None:
        if failing:
            raise RuntimeError("metrics backend gone")

    merged = batcher(lambda items: [1 for _ in items], window=0, max_items=1, on_batch=on_batch)
    merged.start()
    served, failed = Request(), Request()
    failing = False
    await within(5, merged.submit(served))
    failing = True
    with pytest.raises(RuntimeError):
        await within(5, merged.submit(failed))
    failing = False
    await within(5, merged.submit(Request()))  # a later round replaces the worker's locals
    gone = [weakref.ref(served), weakref.ref(failed)]
    del served, failed
    gc.collect()
    assert [ref() for ref in gone] == [None, None]
    await merged.stop()


class Fatal(BaseException):
    """An error no round catches (not an `Exception`): it ends the worker task itself."""


async def test_a_worker_that_dies_fails_every_request_and_reports_why() -> None:
    """The worker ending by itself is a crash: each request still waiting (on the model, handed
    off, formed, queued) gets a 503 saying the worker stopped, the queue's work returns to zero,
    `on_stop` receives the error (logged as CRITICAL by the service), and a later `stop` does not
    raise it again (it would cut the service's shutdown short)."""
    release = threading.Event()
    reported: list[BaseException | None] = []

    def process(items: list) -> list:
        release.wait(5)
        raise Fatal("the model thread is gone")

    merged = batcher(process, window=0, max_items=1, on_stop=reported.append)
    merged.start()
    requests = []
    for item in range(1, 5):  # 1 on the model, 2 handed off, 3 formed and waiting, 4 queued
        requests.append(asyncio.ensure_future(merged.submit(item)))
        await asyncio.sleep(0.01)
    assert merged.queued == 1
    release.set()
    for request in requests:
        with pytest.raises(Overloaded) as refused:
            await within(5, request)
        assert str(refused.value) == "the model worker has stopped"
    assert merged.stopped and merged.queued_work == 0
    [error] = reported
    assert isinstance(error, BaseExceptionGroup) and error.subgroup(Fatal) is not None
    await merged.stop()
