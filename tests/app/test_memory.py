"""Memory freed after a burst of large requests, or with a swapped-out bundle, goes back to the system."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app import memory
from tests.support import REPO

# Large blocks made and freed twice, as tables are with each bundle (the second time is the one
# that stayed: TensorFlow's pool kept the first tensor's memory, glibc's heap the second array's).
FREE_LARGE_BLOCKS = """
import json
from app import memory
memory.release_large_blocks()
import numpy as np
import tensorflow as tf

tf.ones(4)
before = memory.resident_mb()
peaks = []
for _ in range(2):
    tensor, array = tf.ones((4096, 1024)), np.ones(2 << 20)  # 16 MiB each
    peaks.append(memory.resident_mb() - before)
    del tensor, array
print(json.dumps({"peaks": peaks, "kept": memory.resident_mb() - before}))
"""
# `python -m app` with no bundle to serve: it stops with status 2, after the allocator settings.
SERVE_WITHOUT_A_BUNDLE = """
import json, sys
from app import memory
import app.__main__ as server

calls = []
memory.release_large_blocks = lambda: calls.append("tensorflow" in sys.modules)
status = server.main([])
print(json.dumps({"status": status, "tensorflow_imported_at_each_call": calls}))
"""
# `python -m app` serving v1, which swaps to v2: is v1 freed, as every bundle swapped out is?
# (It is the one bundle loaded before the app is built; whoever holds it then may keep it.)
SERVE_AND_SWAP = """
import asyncio, gc, json, os, weakref
import app.__main__ as server
import app.server
from app.bundle_store import point_current

def serve(settings, application):
    async def swap():
        async with application.router.lifespan_context(application):
            service = application.state.service
            first = weakref.ref(service.bundle)
            point_current(settings.model_dir, "v2")
            outcome = await service.reload()
            gc.collect()
            return {"outcome": outcome, "first_freed": first() is None}
    print(json.dumps(asyncio.run(swap())))
    return 0

app.server.serve = serve
server.main([])
"""

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


def test_large_blocks_go_back_to_the_system_when_freed():
    sizes = run_fresh(FREE_LARGE_BLOCKS)
    assert min(sizes["peaks"]) > 30  # both blocks were made, each time
    assert sizes["kept"] < 4


def test_the_server_makes_large_blocks_returnable_before_tensorflow_is_imported(tmp_path):
    started = run_fresh(SERVE_WITHOUT_A_BUNDLE, MODEL_DIR=str(tmp_path / "no-bundle"))
    assert started == {"status": 2, "tensorflow_imported_at_each_call": [False]}


def test_the_bundle_served_first_is_freed_once_swapped_out(two_versions):
    swapped = run_fresh(SERVE_AND_SWAP, MODEL_DIR=str(two_versions), RELOAD_INTERVAL_S="0")
    assert swapped == {"outcome": "swapped", "first_freed": True}


def run_fresh(script: str, **environment: str) -> dict:
    """What `script` prints as JSON, run in a fresh interpreter whose allocators nobody has set up."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name not in ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**inherited, "TF_CPP_MIN_LOG_LEVEL": "2", **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout, done.stderr
    return json.loads(done.stdout)
