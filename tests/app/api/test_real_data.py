"""The routes' answers on a bundle trained on the real ml-latest-small."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from app.bundle import load_bundle
from app.bundle_store import current_bundle_path
from app.main import create_app
from app.settings import Settings
from tests.support.bundles import expected_top
from training.cli import main as train

USERS = (1, 2, 77, 414, 610)


@pytest.fixture(scope="module")
def movielens_model_dir(tmp_path_factory, movielens_dir):
    model_dir = tmp_path_factory.mktemp("movielens-models")
    flags = ["--members", "2", "--epochs", "1", "--evaluation-users", "50", "--verbose", "0"]
    assert train(["--data-dir", str(movielens_dir), "--model-dir", str(model_dir), *flags]) == 0
    return model_dir


@pytest.fixture(scope="module")
def bundle(movielens_model_dir):
    return load_bundle(current_bundle_path(movielens_model_dir))


@pytest.fixture(scope="module")
def client(movielens_model_dir):
    with TestClient(create_app(Settings(model_dir=movielens_model_dir, reload_interval_s=0))) as client:
        yield client


@pytest.mark.parametrize("user_id", USERS)
def test_top_10_equals_the_best_unrated_by_model_predict(client, bundle, user_id):
    body = client.get(f"/users/{user_id}/recommendations", params={"k": 10}).json()
    ids, stars, _ = expected_top(bundle, user_id, 10)
    assert [r["movie_id"] for r in body["recommendations"]] == ids
    np.testing.assert_allclose([r["predicted_rating"] for r in body["recommendations"]], stars, atol=1e-3)


def test_predict_equals_model_predict(client, bundle):
    rng = np.random.default_rng(7)
    rows = np.stack(
        [rng.integers(0, len(bundle.encoders.users), 500), rng.integers(0, len(bundle.encoders.movies), 500)],
        1,
    ).astype(np.int32)
    pairs = [{"user_id": bundle.encoders.users[u], "movie_id": bundle.encoders.movies[m]} for u, m in rows]
    predictions = client.post("/predict", json={"pairs": pairs}).json()["predictions"]
    expected = bundle.encoders.to_stars(bundle.model.predict(rows, verbose=0)["rating"].reshape(-1))
    np.testing.assert_allclose([p["predicted_rating"] for p in predictions], expected, atol=1e-3)


def test_titles_and_genres_match_movies_csv(client, movielens_folder):
    movies = pd.read_csv(movielens_folder / "movies.csv").set_index("movieId")
    body = client.get("/users/1/recommendations", params={"k": 20}).json()
    for item in body["recommendations"]:
        assert item["title"] == movies.loc[item["movie_id"], "title"]
        listed = movies.loc[item["movie_id"], "genres"]
        assert item["genres"] == ([] if listed == "(no genres listed)" else listed.split("|"))
    assert client.get("/movies/1").json()["title"] == "Toy Story (1995)"
