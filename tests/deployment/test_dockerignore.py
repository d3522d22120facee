"""`.dockerignore`: the build context holds what the Dockerfile copies and nothing else.

Matched by docker-py's `PatternMatcher`, which follows Moby's rules.
"""

from __future__ import annotations

from tests.support import REPO
from tests.support.deployment import build_context, copy_sources, dockerfile_stages


def test_build_context_excludes_local_state_and_keeps_what_the_dockerfile_copies() -> None:
    ignored = build_context()
    for path in [
        ".venv/bin/python",
        ".git/config",
        ".env",
        "app/.env",
        "tests/test_api.py",
        "models/current",
        "models/20250101T000000/model.keras",
        "data/ratings.csv",
        "ml-latest-small.zip",
        "benchmarks/results/latency.json",
        "app/__pycache__/main.cpython-311.pyc",
    ]:
        assert ignored.matches(path), f".dockerignore lets {path} into the build context"
    for stage in dockerfile_stages():
        for source in copy_sources(stage):
            assert (REPO / source).exists(), f"the Dockerfile copies {source}, which is missing"
            assert not ignored.matches(source.rstrip("/")), (
                f"the Dockerfile copies {source}, but .dockerignore excludes it"
            )
