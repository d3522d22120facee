"""Encoding ids and stars for the model, and the seed's train/validation split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.support.data import ODD_MOVIE_IDS, ODD_USER_IDS, write_movielens
from training.data import load
from training.dataset import encode, holdout_slice, seed_split


def test_every_rating_in_the_bundle_maps_back_to_its_original_ids(tiny_bundle, tiny_ratings):
    """encoders.json and ratings.npz together reproduce ratings.csv exactly (ids and stars)."""
    encoders = json.loads((tiny_bundle / "encoders.json").read_text())
    users, movies = np.array(encoders["users"]), np.array(encoders["movies"])
    with np.load(tiny_bundle / "ratings.npz") as stored:
        indptr, movie_rows, stars = stored["indptr"], stored["movies"], stored["ratings"]
    user_rows = np.repeat(np.arange(len(users)), np.diff(indptr))
    decoded = pd.DataFrame({"userId": users[user_rows], "movieId": movies[movie_rows], "rating": stars})
    original = tiny_ratings[["userId", "movieId", "rating"]].astype({"rating": np.float32})
    key = ["userId", "movieId"]
    pd.testing.assert_frame_equal(
        decoded.sort_values(key).reset_index(drop=True),
        original.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )
    assert sorted(users) == sorted(tiny_ratings["userId"].unique())
    assert sorted(movies) == sorted(tiny_ratings["movieId"].unique())
    assert encoders["rating_min"] == tiny_ratings["rating"].min()
    assert encoders["rating_max"] == tiny_ratings["rating"].max()


def test_arbitrary_integer_ids_survive_reading_and_encoding(tmp_path):
    rows = [
        (user, movie, float(1 + (i + j) % 9) / 2)
        for i, user in enumerate(ODD_USER_IDS)
        for j, movie in enumerate(ODD_MOVIE_IDS)
        if (i + j) % 3
    ]
    data = load(write_movielens(tmp_path / "data", rows))
    assert data.ratings["userId"].tolist() == [row[0] for row in rows]
    assert data.ratings["movieId"].tolist() == [row[1] for row in rows]

    encoded = encode(data.ratings)
    users, movies = np.array(encoded.encoders.users), np.array(encoded.encoders.movies)
    assert users[encoded.pairs[:, 0]].tolist() == [row[0] for row in rows]
    assert movies[encoded.pairs[:, 1]].tolist() == [row[1] for row in rows]
    assert encoded.stars.tolist() == [row[2] for row in rows]
    # Rows in order of first appearance, as the seed encodes them.
    assert encoded.encoders.users == list(dict.fromkeys(row[0] for row in rows))
    assert encoded.encoders.movies == list(dict.fromkeys(row[1] for row in rows))
    assert encoded.pairs.dtype == np.int32 and encoded.pairs.shape == (len(rows), 2)


@pytest.mark.parametrize("n", [1, 2, 10, 11, 999, 3000, 100_836])
@pytest.mark.parametrize("seed", [42, 0, 7])
def test_the_split_is_pandas_sample_order_then_90_10(n, seed):
    """Same rows, same order as the seed notebook: df.sample(frac=1, random_state=42), 90% train."""
    frame = pd.DataFrame({"row": np.arange(n)})
    shuffled = frame.sample(frac=1, random_state=seed)["row"].to_numpy()
    n_train = int(0.9 * n)

    split = seed_split(n, 0.1, seed)
    np.testing.assert_array_equal(split.train, shuffled[:n_train])
    np.testing.assert_array_equal(split.validation, shuffled[n_train:])
    assert len(split.train) == n_train and len(split.validation) == n - n_train


def test_the_split_defaults_are_the_seed_notebooks():
    shuffled = pd.DataFrame({"row": np.arange(1234)}).sample(frac=1, random_state=42)["row"].to_numpy()
    split = seed_split(1234)
    np.testing.assert_array_equal(np.concatenate([split.train, split.validation]), shuffled)
    assert len(split.train) == int(0.9 * 1234)


@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.5])
def test_other_validation_fractions_split_the_same_order(fraction):
    split = seed_split(1001, fraction, 42)
    shuffled = pd.DataFrame({"row": np.arange(1001)}).sample(frac=1, random_state=42)["row"].to_numpy()
    assert len(split.train) == int((1 - fraction) * 1001)
    np.testing.assert_array_equal(np.concatenate([split.train, split.validation]), shuffled)


def test_the_bundle_records_the_split_it_used(tiny_bundle, tiny_ratings):
    split = json.loads((tiny_bundle / "metadata.json").read_text())["split"]
    n = len(tiny_ratings)
    assert (split["seed"], split["validation_fraction"]) == (42, 0.1)
    assert (split["train"], split["validation"]) == (int(0.9 * n), n - int(0.9 * n))


def test_early_stopping_watches_only_the_tail_of_the_training_part():
    train = np.arange(100)[::-1].copy()
    fit, tail = holdout_slice(train, 0.05)
    np.testing.assert_array_equal(fit, train[:95])
    np.testing.assert_array_equal(tail, train[95:])
    fit, tail = holdout_slice(train, 0.0)
    assert len(fit) == 100 and len(tail) == 0
