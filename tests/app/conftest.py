"""Fixtures of the app tests: one app over the tiny bundle, and a model folder with two versions.

The app is imported inside its fixture: importing it loads TensorFlow, whose start-up lines
would otherwise reach the terminal while pytest collects (it captures only test modules).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.bundle_store import point_current
from benchmarks.servers import copy_bundle_as
from tests.support.bundles import shift_ratings


@pytest.fixture(scope="package")
def client(tiny_model_dir: Path):
    """The app serving the tiny bundle, started once for the app tests that only send requests.

    Caps small enough to test: 50 pairs per /predict, 100 kB per body. No reloading.
    """
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    settings = Settings(
        model_dir=tiny_model_dir, predict_max_pairs=50, max_body_bytes=100_000, reload_interval_s=0
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def two_versions(tmp_path: Path, tiny_bundle: Path) -> Path:
    """A model folder serving v1, with a v2 beside it: other weights (every movie bias shifted), so
    an answer computed on the wrong version shows."""
    for version in ("v1", "v2"):
        copy_bundle_as(tiny_bundle, tmp_path, version)
    shift_ratings(tmp_path / "v2")
    point_current(tmp_path, "v1")
    return tmp_path
