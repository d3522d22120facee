"""`python -m app` with every garbage-collector pause recorded, for `benchmarks.load --gc-stats`.

    python -m benchmarks.gcstats OUT.json [--host H --port P]

Runs the real server unchanged, with one `gc.callbacks` hook that notes when each collection
started, its generation and how long it held the interpreter; at exit the list goes to OUT.json
as `[wall_start, generation, seconds]` rows, which the benchmark then splits by measured run.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    out = Path(sys.argv[1])
    pauses: list[tuple[float, int, float]] = []
    started = [0.0, 0.0]

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            started[0], started[1] = time.time(), time.perf_counter()
        else:
            pauses.append((started[0], info["generation"], time.perf_counter() - started[1]))

    def write() -> None:
        out.write_text(json.dumps({"pauses": pauses, "tracked_objects_at_exit": len(gc.get_objects())}))

    gc.callbacks.append(record)
    atexit.register(write)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from app.__main__ import main as serve

    return serve(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
