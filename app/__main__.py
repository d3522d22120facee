"""`python -m app [--host H --port P]`: serve `MODEL_DIR/current` with uvicorn.

Anything that stops the start (a setting, the bundle, the address) is one JSON error line with
the reason, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

CANNOT_START = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve movie recommendations.")
    parser.add_argument("--host", help="address to listen on (default: $HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 8000)")
    args = parser.parse_args(argv)

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from app import logs
    from app.memory import release_large_blocks
    from app.settings import Settings
    from app.threads import limit_compute_threads

    logs.configure("info")
    try:
        settings = Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        return cannot_serve(f"invalid setting ({problems})")
    except SettingsError as error:  # a list or object setting that is not JSON
        field = re.search(r'field "(\w+)"', str(error))
        name = field.group(1).upper() if field else str(error)
        return cannot_serve(f'invalid setting ({name}: not JSON; a list is written as ["https://a.example"])')
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    settings = settings.model_copy(update=overrides)
    logs.configure(settings.log_level)
    problem = settings.exposure_problem()
    if problem:
        return cannot_serve(problem)
    release_large_blocks()  # before TensorFlow's import, here or in a worker
    if settings.workers > 1:  # each worker loads its own bundle: this process only supervises
        from app.server import serve_workers
        from app.threads import set_pool_variables

        set_pool_variables(settings.compute_threads)
        return serve_workers(settings)
    limit_compute_threads(settings.compute_threads)

    import signal

    from app.bundle_store import current_bundle_path
    from app.feedback.db import async_url, describe
    from app.main import create_app
    from app.served import ServedBundle
    from app.server import serve
    from app.service import first_line, freeze_heap

    freeze_heap()  # the imports' objects, out of every later collection's way
    try:
        preloaded = ServedBundle.load(current_bundle_path(settings.model_dir))
    except Exception as error:  # a BundleError names the file and the fix; anything else, its reason
        return cannot_serve(first_line(error))
    app, version = create_app(settings, preloaded), preloaded.version
    del preloaded  # the service alone holds the bundle it serves, or a swap could not free it
    # uvicorn drains on SIGTERM, then re-raises the signal; a no-op handler makes that a clean exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    logs.log(
        "serving",
        model_version=version,
        docs=f"http://{settings.host}:{settings.port}/docs",
        feedback=describe(async_url(settings.feedback_database_url())),
    )
    return serve(settings, app)


def cannot_serve(reason: str) -> int:
    from app import logs

    logs.log("cannot serve", logging.ERROR, reason=reason)
    return CANNOT_START


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
