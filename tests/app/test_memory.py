"""Memory freed after a burst of large requests goes back to the system."""

from __future__ import annotations

import pytest

from app import memory

pytestmark = pytest.mark.anyio


async def test_memory_freed_after_a_burst_is_given_back(monkeypatch):
    trimmer = memory.Trimmer(threshold_mb=64)
    trims = []
    monkeypatch.setattr(trimmer, "_trim", lambda pad: trims.append(pad))
    sizes = iter([trimmer.baseline + 10, trimmer.baseline + 500, trimmer.baseline + 20])
    monkeypatch.setattr(memory, "resident_mb", lambda: next(sizes))
    await trimmer.check()  # grown a little: nothing to do
    assert trims == []
    await trimmer.check()  # a burst: trimmed, and the size after it is the new baseline
    assert trims == [0]


def test_the_resident_size_is_read():
    assert 10 < memory.resident_mb() < 100_000
