"""Giving memory back to the system after a burst of large requests.

glibc's allocator keeps freed memory in its heaps rather than returning it: after a thousand large
request bodies have come and gone, the process stays hundreds of megabytes larger than it needs
to be. `Trimmer` checks the resident size now and then and, once it has grown by `threshold_mb`
since the last trim, asks glibc to release what it holds free (`malloc_trim`, on a thread: it
needs no interpreter lock and takes milliseconds). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time

from app.logs import log

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_MB


def _malloc_trim() -> ctypes._CFuncPtr | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class Trimmer:
    def __init__(self, threshold_mb: float = 64.0) -> None:
        self.threshold_mb = threshold_mb
        self._trim = _malloc_trim()
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
