"""`python -m tests.support.workers --host H --port P`: the app in 2 worker processes under
uvicorn's multiprocess supervisor, configured by `app.server.make_config` as `python -m app` is:
what a WORKERS setting would run. For `tests/app/test_process.py`."""

from __future__ import annotations

import argparse

from uvicorn.supervisors import Multiprocess

from app.server import listen, make_config
from app.settings import Settings

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    settings = Settings().model_copy(update=vars(parser.parse_args()))
    config = make_config(settings, "app.main:create_app", factory=True, workers=2)
    Multiprocess(config, sockets=[listen(settings)]).run()
