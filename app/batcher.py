"""Merging concurrent requests into one model call (micro-batching).

A request submits its item and awaits a future. One worker task takes the first waiting item,
keeps collecting for a short window or until a size cap, lets an optional `prepare` coroutine
complete the items on the event loop (one database query for the whole batch, say), then runs
the whole batch in a thread (off the event loop) and hands each request exactly its own result.
While a batch runs, new items queue up and form the next batch, so under load batches grow by
themselves. An exception in a batch fails only the requests in that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Overloaded(Exception):
    """The queue is full: the caller should answer 503 and ask the client to retry."""


@dataclass(frozen=True)
class Batched(Generic[Result]):
    """A request's own result and the size of the batch it was computed in."""

    value: Result
    batch_size: int


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
    ) -> None:
        self._process = process
        self._prepare = prepare
        self._window = window
        self._max_items = max_items
        self._max_queue = max_queue
        self._executor = executor
        self._on_batch = on_batch
        self._pending: deque[tuple[Item, asyncio.Future[Batched[Result]]]] = deque()
        self._arrived = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(Overloaded("the server is shutting down"))

    async def submit(self, item: Item) -> Batched[Result]:
        """Queues one item and waits for its result; raises `Overloaded` when the queue is full."""
        if len(self._pending) >= self._max_queue:
            raise Overloaded(f"{len(self._pending)} requests are already queued")
        future: asyncio.Future[Batched[Result]] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._arrived.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            items = [item for item, _ in batch]
            self._on_batch(len(items))
            try:
                if self._prepare is not None:
                    items = await self._prepare(items)
                results = await loop.run_in_executor(self._executor, self._process, items)
            except Exception as error:  # one failed batch fails its own requests, and only them
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(Batched(result, len(batch)))

    async def _collect(self) -> list[tuple[Item, asyncio.Future[Batched[Result]]]]:
        """Waits for a first item, then for the window to pass or the batch to fill."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        if self._window > 0 and len(self._pending) < self._max_items:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._window):
                    while len(self._pending) < self._max_items:
                        self._arrived.clear()
                        await self._arrived.wait()
        batch = []
        while self._pending and len(batch) < self._max_items:
            item, future = self._pending.popleft()
            if not future.cancelled():  # the client went away; skip its work
                batch.append((item, future))
        return batch
