"""Merging concurrent requests into one model call (micro-batching).

A request submits its item and awaits a future. One worker task takes the first waiting item,
keeps collecting for a short window, until a size cap, or, with the model idle, until as many
items wait as the largest of the last few batches took (everyone who was coming is in), lets an
optional `prepare` coroutine complete the items on the event loop (one database query for the
whole batch, say), then runs the whole batch in a thread (off the event loop) and hands each
request exactly its own result.
While a batch runs, new items queue up and form the next batch, so under load batches grow by
themselves.

Work, not requests, is what is bounded: each item has a cost (`cost`, 1 by default; the pairs of
a `/predict` request), the queue refuses an item once `max_queue` work is waiting (`Overloaded`,
503), and a batch stops growing at `max_batch_work`. An item whose caller went away (its future
cancelled) gives its place back at once and is never computed.

The worker is supervised: a fault anywhere in one round (collecting, the batch-size callback,
`prepare`, the model call, handing out results) fails only that batch. Should the task end all
the same, every waiting request fails at once, later ones are refused, `alive` turns False (the
service's readiness says so) and `on_stop` is called.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

RECENT_BATCHES = 8  # the batch sizes `_full` remembers

Item = TypeVar("Item")
Result = TypeVar("Result")


class Overloaded(Exception):
    """Too much work is queued, or the worker has stopped: the caller should answer 503."""


@dataclass(frozen=True)
class Batched(Generic[Result]):
    """A request's own result and the size of the batch it was computed in."""

    value: Result
    batch_size: int


class _Waiting(Generic[Item, Result]):
    """A queued item, its future and its cost (0 once taken off the queue's work count)."""

    __slots__ = ("cost", "future", "item")

    def __init__(self, item: Item, future: asyncio.Future[Batched[Result]], cost: int) -> None:
        self.item, self.future, self.cost = item, future, cost


class MicroBatcher(Generic[Item, Result]):
    """Collects items for `window` seconds (or up to `max_items`) and processes them together."""

    def __init__(
        self,
        process: Callable[[Sequence[Item]], Sequence[Result]],
        *,
        window: float,
        max_items: int,
        max_queue: int,
        executor: Executor,
        on_batch: Callable[[int], None] = lambda size: None,
        prepare: Callable[[list[Item]], Awaitable[list[Item]]] | None = None,
        cost: Callable[[Item], int] | None = None,
        max_batch_work: int | None = None,
        on_stop: Callable[[BaseException | None], None] = lambda error: None,
    ) -> None:
        self._process = process
        self._prepare = prepare
        self._window = window
        self._max_items = max_items
        self._max_queue = max_queue
        self._max_batch_work = max_batch_work
        self._cost = cost
        self._executor = executor
        self._on_batch = on_batch
        self._on_stop = on_stop
        self._pending: deque[_Waiting[Item, Result]] = deque()
        self._queued_work = 0
        self._arrived = asyncio.Event()
        self._in_flight: list[list[_Waiting[Item, Result]]] = []  # batches formed and not yet answered
        self._recent_sizes: deque[int] = deque(maxlen=RECENT_BATCHES)  # items taken per batch
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def queued(self) -> int:
        """Items waiting (cancelled ones included until the worker skips them)."""
        return len(self._pending)

    @property
    def queued_work(self) -> int:
        """The work waiting, by `cost`: what admission counts."""
        return self._queued_work

    @property
    def alive(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @property
    def stopped(self) -> bool:
        """Started and ended: what only a restart mends (not started yet is not stopped)."""
        return self._worker is not None and self._worker.done()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")
        self._worker.add_done_callback(self._ended)

    async def stop(self) -> None:
        self._stopping = True
        if self._worker is not None:
            self._worker.cancel()
            # Waited for, not awaited: a worker that died has had its error reported (`on_stop`),
            # and raising it again here would cut the rest of the shutdown short.
            await asyncio.wait([self._worker])
        self._fail_waiting("the server is shutting down")

    async def submit(self, item: Item) -> Batched[Result]:
        """Queues one item and waits for its result; raises `Overloaded` when the queue is full.

        An item alone is always admitted, however costly: a cap it could never meet would refuse it
        forever (its size is the route's business).
        """
        if not self.alive:
            raise Overloaded("the model worker has stopped")
        cost = 1 if self._cost is None else self._cost(item)
        if self._queued_work and self._queued_work + cost > self._max_queue:
            raise Overloaded(f"{self._queued_work} units of work are already queued")
        waiting = _Waiting(item, asyncio.get_running_loop().create_future(), cost)
        self._pending.append(waiting)
        self._queued_work += cost
        self._arrived.set()
        try:
            return await waiting.future
        except asyncio.CancelledError:  # the caller went away: give its place back now
            self._queued_work -= waiting.cost
            waiting.cost = 0
            raise

    async def _run(self) -> None:
        """Two stages joined by a hand-off of one batch: while the model computes a batch, the next
        one is collected and prepared, so neither the event loop nor the model thread waits for
        the other."""
        ready: asyncio.Queue[tuple[list[_Waiting[Item, Result]], list[Item]]] = asyncio.Queue(maxsize=1)
        async with asyncio.TaskGroup() as stages:
            stages.create_task(self._form_batches(ready))
            stages.create_task(self._compute_batches(ready))

    async def _form_batches(
        self, ready: asyncio.Queue[tuple[list[_Waiting[Item, Result]], list[Item]]]
    ) -> None:
        while True:
            batch: list[_Waiting[Item, Result]] = []
            self._in_flight.append(batch)
            try:
                await self._collect(batch)
                items = [waiting.item for waiting in batch]
                self._on_batch(len(items))
                if self._prepare is not None:
                    items = await self._prepare(items)
            except Exception as error:  # one failed round fails its own requests, and only them
                self._fail(batch, error)
                self._answered(batch)
                continue
            await ready.put((batch, items))

    async def _compute_batches(
        self, ready: asyncio.Queue[tuple[list[_Waiting[Item, Result]], list[Item]]]
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch, items = await ready.get()
            try:
                results = await loop.run_in_executor(self._executor, self._process, items)
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
                for waiting, result in zip(batch, results, strict=True):
                    if not waiting.future.done():
                        waiting.future.set_result(Batched(result, len(batch)))
            except Exception as error:
                self._fail(batch, error)
            # Not in a `finally`: a stage cancelled or dying mid-call leaves its batch in flight,
            # for `_fail_waiting` to answer; dropped here, its requests would wait forever.
            self._answered(batch)

    def _answered(self, batch: list[_Waiting[Item, Result]]) -> None:
        self._in_flight = [other for other in self._in_flight if other is not batch]

    def _fail(self, batch: list[_Waiting[Item, Result]], error: BaseException) -> None:
        for waiting in batch:
            if not waiting.future.done():
                waiting.future.set_exception(error)

    async def _collect(self, batch: list[_Waiting[Item, Result]]) -> None:
        """Waits for a first item, then for the window to pass or the batch to fill; moves the
        batch's items (never a cancelled one) from the queue into `batch`."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        if self._window > 0 and not self._full():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._window):
                    while not self._full():
                        self._arrived.clear()
                        await self._arrived.wait()
        work = taken = 0
        while self._pending and len(batch) < self._max_items:
            waiting = self._pending[0]
            if self._max_batch_work is not None and batch and work + waiting.cost > self._max_batch_work:
                break
            self._pending.popleft()
            self._queued_work -= waiting.cost
            work, waiting.cost, taken = work + waiting.cost, 0, taken + 1
            if not waiting.future.cancelled():  # the client went away; skip its work
                batch.append(waiting)
        self._recent_sizes.append(taken)

    def _full(self) -> bool:
        """Enough waits to close the batch: `max_items`, `max_batch_work`, or, while the model
        has nothing to do, as many items as the largest of the last `RECENT_BATCHES` batches
        took, when that was more than one.

        Under steady load the same clients come back each round: once all of them are in, the
        window has nothing left to wait for, and waiting it out would hold every one of them
        while the model idles (at 32 connections, 2 ms of a 15 ms round). While the model is busy
        a batch could not start sooner anyway, and closing early would only make it smaller: it
        waits for the window as before (at ml-25m's size, closing early regardless cost a
        quarter of the throughput).
        """
        expected = self._max_items
        if len(self._in_flight) == 1:  # only the batch being collected: none is on the model or waits for it
            # Never fewer than two: a lone request still waits for company, as a window promises.
            expected = min(max(2, max(self._recent_sizes, default=self._max_items)), self._max_items)
        if len(self._pending) >= expected:
            return True
        return self._max_batch_work is not None and self._queued_work >= self._max_batch_work

    def _ended(self, worker: asyncio.Task[None]) -> None:
        """The worker task ended: on purpose (`stop`), or not, which must not go unnoticed."""
        if self._stopping:
            return
        error = None if worker.cancelled() else worker.exception()
        self._fail_waiting("the model worker has stopped")
        self._on_stop(error)

    def _fail_waiting(self, reason: str) -> None:
        for batch in self._in_flight:
            self._fail(batch, Overloaded(reason))
        while self._pending:
            waiting = self._pending.popleft()
            self._queued_work -= waiting.cost
            if not waiting.future.done():
                waiting.future.set_exception(Overloaded(reason))
