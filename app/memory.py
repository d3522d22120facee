"""Giving memory back to the system: after a burst of large requests, and after a live swap.

glibc's allocator keeps freed memory in its heaps rather than returning it: after a thousand large
request bodies have come and gone, the process stays hundreds of megabytes larger than it needs
to be. `Trimmer` checks the resident size now and then and, once it has grown by `threshold_mb`
since the last trim, asks glibc to release what it holds free (`malloc_trim`, on a thread: it
needs no interpreter lock and takes milliseconds).

A bundle's tables are a few large blocks that live as long as the bundle; `release_large_blocks`
makes them go straight back to the system when a swapped-out bundle is freed. Elsewhere than
glibc, `Trimmer` does nothing and `release_large_blocks` only sets TensorFlow's variable.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time

from app.logs import log

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's `mallopt` parameters (malloc.h)
# Blocks this large or larger are mapped on their own and unmapped when freed. A bundle's largest
# tables are larger (10 MB for ml-latest-small's ranking table, 60 MB at ml-25m's size); a batch's
# temporaries under the benchmarks' loads are smaller (64 requests of 100 pairs gather 6.5 MB of
# ranking rows) and stay in the heap, where reusing them is free. At 4 MB, /predict's were mapped
# and unmapped in every batch, which cost /predict 17 % of its throughput.
MMAP_THRESHOLD_BYTES = 8 << 20


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_MB


def release_large_blocks() -> None:
    """Makes the large blocks a bundle holds go back to the system when the bundle is freed.

    Call before TensorFlow is imported; worker processes inherit both settings through the
    environment, and either can be overridden there. Without them, two allocators keep a
    swapped-out bundle's memory (measured: README, Performance):

    - TensorFlow's oneDNN CPU allocator serves large tensors from a pool that grows by doubling
      and never shrinks: under load, the second swap grew it by 64 MB for good (found with
      heaptrack). `TF_ONEDNN_USE_SYSTEM_ALLOCATOR` hands those tensors to malloc instead.
    - glibc maps a large block on its own, but raises that threshold to the size of each mapped
      block freed. Once the old bundle's tables are freed, the next bundle's land in the heap,
      where what is freed stays. A fixed threshold (which `mallopt` also sets for this process,
      whose allocator has started already) keeps them mapped. Fixing it also stops glibc from
      adjusting the heap's trim threshold, left at 128 kB: that is set where glibc's own rule
      would put it, twice the mapping threshold, so that the heap's top is not given back and
      taken again batch after batch.
    """
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    mallopt = _libc_function("mallopt")
    for parameter, name, default in (
        (M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD_BYTES),
        (M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", 2 * MMAP_THRESHOLD_BYTES),
    ):
        value = os.environ.setdefault(name, str(default))
        if mallopt is not None and value.isdigit():
            mallopt(parameter, int(value))


def _libc_function(name: str) -> ctypes._CFuncPtr | None:
    try:
        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None


class Trimmer:
    def __init__(self, threshold_mb: float = 64.0) -> None:
        self.threshold_mb = threshold_mb
        self._trim = _libc_function("malloc_trim")
        self.baseline = resident_mb()

    async def check(self) -> None:
        """Trims once the resident size has grown `threshold_mb` beyond the last baseline."""
        before = resident_mb()
        if self._trim is None or before < self.baseline + self.threshold_mb:
            self.baseline = min(self.baseline, before)
            return
        await self._trim_from(before)

    async def trim(self) -> None:
        """Trims now (after an old bundle is freed, say) and takes the new size as the baseline."""
        if self._trim is not None:
            await self._trim_from(resident_mb())

    async def _trim_from(self, before: float) -> None:
        assert self._trim is not None
        started = time.perf_counter()
        await asyncio.to_thread(self._trim, 0)
        self.baseline = resident_mb()
        took_ms = round((time.perf_counter() - started) * 1000, 1)
        log("memory trimmed", before_mb=round(before), after_mb=round(self.baseline), took_ms=took_ms)
