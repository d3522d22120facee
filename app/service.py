"""The server's shared state: the served bundle, its batchers, live swaps, and the feedback store.

One `Service` lives for the app's lifetime. Model calls run on a single worker thread, so the
two batchers never fight over the cores; loading a new bundle runs on another thread, beside the
model in service, and the swap is one reference assignment. The feedback store is opened in
`start` (migrating its schema; a database that is down only makes it unavailable) and closed in
`stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from app.batcher import Batched, MicroBatcher
from app.bundle import BundleError
from app.bundle_store import current_bundle_path, folder_stamp
from app.feedback import FeedbackStore, FeedbackUnavailable
from app.inference import (
    PredictRequest,
    RankBy,
    Recommended,
    RecommendRequest,
    predict_batch,
    recommend_batch,
)
from app.logs import Throttle, log
from app.memory import Trimmer
from app.metrics import Metrics
from app.served import ServedBundle
from app.settings import Settings

T = TypeVar("T")
# Requests in flight on a swapped-out bundle finish well within this; then the heap is frozen again.
SETTLE_SECONDS = 5.0
# The same refusal (a dangling `current`, say) is logged again at most this often; each is counted.
REPEATED_ERROR_LOG_S = 300.0
MEMORY_CHECK_S = 10.0  # how often the resident size is checked for memory to give back


class Service:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.bundle: ServedBundle | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        # Large requests' CPU work, off the event loop, one at a time per stage: reading requests in
        # (JSON parsing, lookups), and answering them. Two queues, so that the answers of requests
        # already computed never wait behind every new request's parsing.
        self._stages = {
            stage: ThreadPoolExecutor(max_workers=1, thread_name_prefix=stage)
            for stage in ("parse", "answer")
        }
        self._recommend = self._batcher(
            recommend_batch,
            "recommend",
            settings.batch_max_users,
            settings.max_queue,
            prepare=self._with_stored_ratings,
        )
        self._predict = self._batcher(
            predict_batch,
            "predict",
            settings.batch_max_requests,
            settings.max_queued_pairs,
            cost=lambda request: len(request.pairs),
            max_batch_work=settings.batch_max_pairs,
        )
        for kind, batcher in (("recommend", self._recommend), ("predict", self._predict)):
            metrics.queued.labels(kind).set_function(lambda b=batcher: b.queued)
            metrics.queued_work.labels(kind).set_function(lambda b=batcher: b.queued_work)
        self.feedback = FeedbackStore.from_settings(settings)
        metrics.database_up.set_function(lambda: float(self.feedback.available))
        self._reload_lock = asyncio.Lock()
        self._refused: object = None  # what the last refused folder held (`folder_stamp`)
        self._errors = Throttle(REPEATED_ERROR_LOG_S)
        self._watcher: asyncio.Task[None] | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._release: asyncio.Task[None] | None = None  # freeing the bundle swapped out last
        self._memory = Trimmer()
        self.draining = False  # SIGTERM: readiness says 503 while what has arrived is answered

    def _batcher(
        self,
        process: Callable[[Sequence[Any]], list[Any]],
        kind: str,
        max_items: int,
        max_queue: int,
        **hooks: Any,
    ) -> MicroBatcher:
        """A micro-batcher on the shared model thread, its batch sizes observed under `kind`."""

        def stopped(error: BaseException | None) -> None:
            self.metrics.model_events.labels("worker_stopped").inc()
            reason = "cancelled" if error is None else first_line(error)
            log("model worker stopped", logging.CRITICAL, kind=kind, reason=reason)

        return MicroBatcher(
            process,
            window=self.settings.batch_window_ms / 1000,
            max_items=max_items,
            max_queue=max_queue,
            executor=self._executor,
            on_batch=self.metrics.batch_size.labels(kind).observe,
            on_stop=stopped,
            **hooks,
        )

    def begin_draining(self) -> None:
        if not self.draining:
            self.draining = True
            log("draining", reason="shutting down: answering what has arrived, then exiting")

    @property
    def problem(self) -> str | None:
        """Why this process cannot answer requests as it should (a model worker stopped), or None."""
        if self._recommend.stopped or self._predict.stopped:
            return "model worker stopped"
        return None

    async def start(self, preloaded: ServedBundle | None = None) -> None:
        """Serves `preloaded`, or loads `MODEL_DIR/current`; raises `BundleError` if it cannot.

        A caller that preloads calls `freeze_heap` before it loads."""
        if preloaded is None:
            freeze_heap()
        bundle = preloaded or await asyncio.to_thread(
            ServedBundle.load, current_bundle_path(self.settings.model_dir)
        )
        self._install(bundle, "loaded")
        self._recommend.start()
        self._predict.start()
        await self.feedback.start()
        loop = asyncio.get_running_loop()
        if self.settings.reload_interval_s > 0:
            self._watcher = loop.create_task(self._watch(), name="bundle-watcher")
        self._trimmer = loop.create_task(self._keep_trimmed(), name="memory-trimmer")

    async def stop(self) -> None:
        for task in (self._watcher, self._trimmer, self._release):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._recommend.stop()
        await self._predict.stop()
        await self.feedback.close()
        self._executor.shutdown(wait=True)
        for stage in self._stages.values():
            stage.shutdown(wait=True, cancel_futures=True)
        self.bundle = None

    async def recommend(
        self, bundle: ServedBundle, user_id: int, k: int, rank_by: RankBy = "ranking", explain: bool = False
    ) -> Batched[Recommended]:
        return await self._recommend.submit(RecommendRequest(bundle, user_id, k, rank_by, explain))

    async def _with_stored_ratings(self, requests: list[RecommendRequest]) -> list[RecommendRequest]:
        """The batch's requests, each with its user's stored ratings, read in one query.

        With the feedback database down (known, or found now), `stored` stays None: users are
        scored from the bundle alone, and users it does not know cannot be answered.
        """
        if not self.feedback.available:
            return requests
        try:
            stored = await self.feedback.ratings_of([request.user_id for request in requests])
        except FeedbackUnavailable:
            return requests
        return [dataclasses.replace(r, stored=stored[r.user_id]) for r in requests]

    async def predict(self, bundle: ServedBundle, pairs: np.ndarray) -> Batched[np.ndarray]:
        return await self._predict.submit(PredictRequest(bundle, pairs))

    async def off_loop(self, work: Callable[[], T], heavy: bool, stage: str = "parse") -> T:
        """`work()`, on the `stage` thread ("parse" or "answer") when `heavy`, else here (a thread
        hop costs ~0.1 ms).

        One thread per stage: heavy work queues rather than crowding the event loop out of the
        GIL; a request that goes away while its work waits is cancelled, and the work never runs.
        """
        if not heavy:
            return work()
        return await asyncio.get_running_loop().run_in_executor(self._stages[stage], work)

    async def reload(self, force: bool = False) -> str:
        """Loads `current` if it points somewhere new; answers 'unchanged', 'swapped' or 'refused'.

        A refused folder is tried again once what it holds changes (fixed in place, say), or at
        once when `force` (an operator's explicit reload); any failure is a refusal with a reason.
        """
        async with self._reload_lock:
            try:
                path = current_bundle_path(self.settings.model_dir)
                if self.bundle is not None and path == self.bundle.bundle.path:
                    return "unchanged"
                stamp = await asyncio.to_thread(folder_stamp, path)
            except (BundleError, OSError) as error:
                return self._refuse(None, error)
            if stamp == self._refused and not force:
                return "refused"
            try:
                bundle = await asyncio.to_thread(ServedBundle.load, path)
            except Exception as error:  # any defect of a new bundle: keep serving the old one
                return self._refuse(path, error, stamp)
            self._install(bundle, "swapped")
            return "swapped"

    def _install(self, bundle: ServedBundle, event: str) -> None:
        previous, self.bundle, self._refused = self.bundle, bundle, None
        if previous is not None:
            self.metrics.model_version.remove(previous.version)
            self._release = asyncio.get_running_loop().create_task(self._release_old())
        self.metrics.model_version.labels(bundle.version).set(1)
        self.metrics.model_events.labels(event).inc()
        log(f"model {event}", model_version=bundle.version, previous=previous and previous.version)

    async def _release_old(self) -> None:
        """Once the requests that started on the old bundle are done, collects its cycles (a full
        collection over the bundles' objects only, the imports being frozen: ~20 ms) and gives
        the memory back to the system."""
        await asyncio.sleep(SETTLE_SECONDS)
        gc.collect()
        await self._memory.trim()

    def _refuse(self, path: Path | None, error: Exception, stamp: object = None) -> str:
        """Counts a refusal and logs it (an identical one at most every `REPEATED_ERROR_LOG_S`)."""
        self._refused = stamp
        self.metrics.model_events.labels("refused").inc()
        reason = first_line(error)
        self._errors.log(
            reason,
            "model refused",
            logging.ERROR,
            bundle=path and path.name,
            reason=reason,
            model_version=self.bundle and self.bundle.version,
        )
        return "refused"

    async def _keep_trimmed(self) -> None:
        """Gives memory freed after a burst of large requests back to the system (`app.memory`)."""
        while True:
            await asyncio.sleep(MEMORY_CHECK_S)
            try:
                await self._memory.check()
            except Exception as error:  # never worth stopping for
                log("memory check failed", logging.WARNING, reason=first_line(error))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            try:
                await self.reload()
            except Exception as error:  # reload refuses what it expects; the rest is counted, not lost
                self.metrics.model_events.labels("error").inc()
                reason = first_line(error)
                self._errors.log(reason, "model check failed", logging.ERROR, reason=reason)


def first_line(error: BaseException) -> str:
    """An error's reason in one line: its message's first line, or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def freeze_heap() -> None:
    """Moves every object alive now out of the collector's reach (`gc.freeze`): call it once,
    after the imports and before the first bundle is loaded.

    TensorFlow and Keras leave ~400,000 long-lived objects; each full collection walked them all,
    pausing the event loop for ~200 ms and setting the p99 latency under load. Frozen, they are
    skipped (still freed by reference counting). The bundles loaded later are not frozen: a
    full collection walks ~27,000 objects for one (~20 ms, `_release_old`), and an old bundle is
    freed entirely.
    """
    gc.collect()
    gc.freeze()
