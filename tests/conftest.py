"""Fixtures shared by the whole suite: one tiny trained bundle, copies of it, the real data.

Everything but the real-data tests runs on small data generated in temporary folders
(`tests.support.data`). Training happens once per session (`tiny_model_dir`); tests that change a
model folder work on a copy of it (`model_dir_copy`). The real MovieLens data comes from
`MOVIELENS_DIR` or the project's downloader (`tests.support.movielens`); without either, the
tests that need it fail saying what to set.

Helpers are plain modules in `tests.support`, imported by name; this file holds fixtures only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from app.bundle import Bundle, load_bundle
from tests.support import movielens
from tests.support.data import catalogue, genre_taste, random_ratings, write_movielens
from tests.support.training import train

# Feedback store fixtures (tests.support.feedback): both database engines, a private STATE_DIR.
pytest_plugins = ("tests.support.feedback",)


# The session fixtures that train a model: a test that uses one trains it first in a fresh session.
TRAINED_FIXTURES = frozenset({"tiny_model_dir", "taste_model_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under mutmut, the tests that train nothing run first.

    mutmut runs each mutant's tests in a fresh session with `-x`: a mutant that a unit test kills
    is then not also trained for (about 10 CPU seconds a mutant). Any other run keeps file order.
    """
    if os.environ.get("MUTANT_UNDER_TEST"):
        items.sort(key=lambda item: bool(TRAINED_FIXTURES & set(getattr(item, "fixturenames", ()))))


@pytest.fixture
def anyio_backend() -> str:
    """The event loop of the `anyio`-marked tests: asyncio, as uvicorn runs the app."""
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_ratings() -> pd.DataFrame:
    """The ratings behind `tiny_model_dir`, as written to its ratings.csv."""
    return random_ratings()


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory, tiny_ratings) -> Path:
    """A MovieLens-shaped folder (ratings.csv, movies.csv with a few unrated movies)."""
    folder = tmp_path_factory.mktemp("tiny-data")
    return write_movielens(folder, tiny_ratings, catalogue(tiny_ratings["movieId"], extra=5))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_data_dir) -> Path:
    """A model folder with one bundle published as `current`: trained once per session, 2 members.

    Shared by every test: do not modify it; use `model_dir_copy` for that.
    """
    model_dir = tmp_path_factory.mktemp("tiny-models")
    status = train(tiny_data_dir, model_dir)
    assert status == 0, "training the session's tiny bundle failed (see captured stderr)"
    return model_dir


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model_dir) -> Path:
    """The version folder that the tiny model folder's `current` points at."""
    return (tiny_model_dir / "current").resolve()


@pytest.fixture(scope="session")
def tiny_loaded(tiny_bundle) -> Bundle:
    """The tiny bundle, loaded once per session: read it, do not change it."""
    return load_bundle(tiny_bundle)


@pytest.fixture
def model_dir_copy(tmp_path, tiny_model_dir) -> Path:
    """A private copy of the tiny model folder, `current` still a relative symlink."""
    copy = tmp_path / "models"
    shutil.copytree(tiny_model_dir, copy, symlinks=True)
    return copy


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """The real MovieLens data, a folder or a .zip: `MOVIELENS_DIR`, else the download."""
    try:
        return movielens.locate()
    except movielens.Unavailable as error:
        reason = str(error)
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def movielens_folder(movielens_dir, tmp_path_factory) -> Path:
    """The real data as a folder: `movielens_dir` itself, or its archive unpacked."""
    try:
        return movielens.as_folder(movielens_dir, tmp_path_factory.mktemp("movielens-folder"))
    except movielens.Unavailable as error:
        reason = str(error)
    pytest.fail(reason, pytrace=False)


@pytest.fixture(scope="session")
def movielens_zip(movielens_dir, tmp_path_factory) -> Path:
    """The real data as a .zip: `movielens_dir` itself, or a zip of the folder."""
    return movielens.as_zip(movielens_dir, tmp_path_factory.mktemp("movielens-zip"))


@pytest.fixture(scope="session")
def taste_model_dir(tmp_path_factory) -> Path:
    """A model folder trained on `genre_taste` data: users who each like one genre."""
    folder = write_movielens(tmp_path_factory.mktemp("taste-data"), *genre_taste())
    model_dir = tmp_path_factory.mktemp("taste-models")
    flags = ("--epochs", "20", "--learning-rate", "0.02", "--batch-size", "64", "--patience", "3")
    assert train(folder, model_dir, *flags) == 0
    return model_dir
