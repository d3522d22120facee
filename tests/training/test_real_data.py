"""The real ml-latest-small (`MOVIELENS_DIR`, else downloaded): read, split and trained on.

Training here is cut to one epoch of one member: these tests check that the real files flow
through to a published bundle, not the model's quality (`python -m benchmarks.check_bundle` does).
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from app.bundle import load_bundle
from app.bundle_store import current_bundle_path
from tests.support.bundles import sha256_of
from tests.support.training import train
from training.data import load
from training.dataset import seed_split

REAL = ["--epochs", "1", "--members", "1", "--verbose", "0", "--evaluation-users", "50"]
ML_LATEST_SMALL = {"ratings": 100_836, "users": 610, "movies": 9_724}


@pytest.fixture(params=["folder", "zip"])
def real_source(request):
    return request.getfixturevalue(f"movielens_{request.param}")


def test_the_cli_trains_and_publishes_a_bundle_from_the_real_data(real_source, tmp_path):
    model_dir = tmp_path / "models"
    assert train(real_source, model_dir, *REAL) == 0
    bundle = load_bundle(current_bundle_path(model_dir))
    metadata = json.loads((bundle.path / "metadata.json").read_text())

    data = metadata["data"]
    assert {key: data[key] for key in ML_LATEST_SMALL} == ML_LATEST_SMALL
    assert data["source"] == real_source.name
    if real_source.is_file():
        assert data["sha256"] == sha256_of(real_source)
    else:
        both = (real_source / "ratings.csv").read_bytes() + (real_source / "movies.csv").read_bytes()
        assert data["sha256"] == hashlib.sha256(both).hexdigest()
    assert (metadata["split"]["train"], metadata["split"]["validation"]) == (90_752, 10_084)
    assert len(bundle.encoders.users) == 610 and len(bundle.encoders.movies) == 9_724
    assert (bundle.encoders.rating_min, bundle.encoders.rating_max) == (0.5, 5.0)
    assert bundle.ratings.indptr[-1] == 100_836
    # Even one epoch of one member beats predicting the global mean.
    metrics = metadata["metrics"]
    assert metrics["model"]["rmse"] < metrics["global mean"]["rmse"]


def test_the_real_folder_and_zip_hold_the_same_ratings(movielens_folder, movielens_zip):
    from_folder, from_zip = load(movielens_folder), load(movielens_zip)
    pd.testing.assert_frame_equal(from_folder.ratings, from_zip.ratings)
    pd.testing.assert_frame_equal(from_folder.movies, from_zip.movies)


def test_the_real_split_is_the_seed_notebooks(movielens_folder):
    ratings = pd.read_csv(movielens_folder / "ratings.csv")
    shuffled = ratings.sample(frac=1, random_state=42)
    n_train = int(0.9 * len(ratings))
    split = seed_split(len(ratings))
    np.testing.assert_array_equal(split.train, shuffled.index[:n_train])
    np.testing.assert_array_equal(split.validation, shuffled.index[n_train:])
    assert (len(split.train), len(split.validation)) == (90_752, 10_084)
