"""`python -m app [--host H --port P]`: serve `MODEL_DIR/current` with uvicorn."""

from __future__ import annotations

import argparse
import os
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Serve movie recommendations.")
    parser.add_argument("--host", help="address to listen on (default: $HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 8000)")
    args = parser.parse_args(argv)

    from pydantic import ValidationError

    from app.settings import Settings
    from app.threads import limit_compute_threads

    try:
        settings = Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        print(f"cannot serve: invalid setting ({problems})", file=sys.stderr)
        return 2
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    settings = settings.model_copy(update=overrides)
    problem = settings.exposure_problem()
    if problem:
        print(f"cannot serve: {problem}", file=sys.stderr)
        return 2
    limit_compute_threads(settings.compute_threads)

    import uvicorn

    from app.bundle import BundleError
    from app.bundle_store import current_bundle_path
    from app.feedback.db import async_url, describe
    from app.main import create_app
    from app.served import ServedBundle

    try:
        preloaded = ServedBundle.load(current_bundle_path(settings.model_dir))
    except BundleError as error:
        print(f"cannot serve: {error}", file=sys.stderr)
        return 2
    app = create_app(settings, preloaded)
    # uvicorn drains on SIGTERM, then re-raises the signal; a no-op handler makes that a clean exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    print(
        f"serving {preloaded.version}: docs at http://{settings.host}:{settings.port}/docs; feedback in "
        f"{describe(async_url(settings.feedback_database_url()))}",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
