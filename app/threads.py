"""Thread pools sized so that the server does not fight itself for the cores.

TensorFlow and BLAS each start a pool as large as the machine by default; with several requests
in flight those pools oversubscribe the cores and throughput collapses. Model calls already run
one at a time on one worker thread, so each call gets a small fixed pool instead.
"""

from __future__ import annotations

import contextlib
import os

POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def set_pool_variables(threads: int) -> None:
    """Caps the pools through the environment, which worker processes inherit (no TensorFlow import)."""
    for name in POOL_VARIABLES:
        os.environ.setdefault(name, str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def limit_compute_threads(threads: int) -> None:
    """Caps the pools; call before the first model is built (TensorFlow fixes them then)."""
    set_pool_variables(threads)
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # already initialised: the pools are fixed by now
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
