"""The HTTP API against the real app and a real (tiny) bundle: every route and its error cases."""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.bundle import load_bundle
from app.bundle_store import current_bundle_path
from app.main import create_app
from app.settings import Settings


@pytest.fixture(scope="module")
def bundle(tiny_model_dir: Path):
    return load_bundle(current_bundle_path(tiny_model_dir))


@pytest.fixture(scope="module")
def client(tiny_model_dir: Path):
    settings = Settings(model_dir=tiny_model_dir, predict_max_pairs=50, reload_interval_s=0)
    with TestClient(create_app(settings)) as client:
        yield client


def expected_top(bundle, user_id: int, k: int) -> tuple[list[int], np.ndarray]:
    """The k best unrated movies by `model.predict` over the whole catalogue, as the seed does."""
    row = bundle.encoders.users.index(user_id)
    n_movies = len(bundle.encoders.movies)
    pairs = np.stack([np.full(n_movies, row), np.arange(n_movies)], axis=1).astype(np.int32)
    stars = bundle.encoders.to_stars(bundle.model.predict(pairs, verbose=0).reshape(-1).astype(np.float64))
    stars[bundle.ratings.of(row)[0]] = -np.inf
    best = np.argsort(-stars, kind="stable")[:k]
    return [bundle.encoders.movies[i] for i in best], stars[best]


def test_recommendations_equal_model_predict_over_the_catalogue(client, bundle):
    for user_id in bundle.encoders.users[:5]:
        body = client.get(f"/users/{user_id}/recommendations", params={"k": 10}).json()
        ids, stars = expected_top(bundle, user_id, 10)
        assert [r["movie_id"] for r in body["recommendations"]] == ids
        got = np.array([r["predicted_rating"] for r in body["recommendations"]])
        np.testing.assert_allclose(got, stars, atol=1e-3)
        assert [r["rank"] for r in body["recommendations"]] == list(range(1, 11))
        assert body["source"] == "model" and body["model_version"] == bundle.version


def test_recommendations_never_include_rated_movies(client, bundle):
    user_id = bundle.encoders.users[0]
    rated = {bundle.encoders.movies[m] for m in bundle.ratings.of(0)[0]}
    body = client.get(f"/users/{user_id}/recommendations", params={"k": 100}).json()
    recommended = [r["movie_id"] for r in body["recommendations"]]
    assert len(recommended) == min(100, len(bundle.encoders.movies) - len(rated))
    assert not rated & set(recommended)


def test_recommendations_carry_catalogue_titles_and_genres(client, bundle):
    body = client.get(f"/users/{bundle.encoders.users[1]}/recommendations", params={"k": 3}).json()
    for item in body["recommendations"]:
        row = bundle.encoders.movies.index(item["movie_id"])
        assert item["title"] == bundle.catalogue.titles[row]
        assert item["genres"] == bundle.catalogue.genres[row]


@pytest.mark.parametrize("k", ["0", "101", "-3", "2.5", "ten"])
def test_recommendations_reject_bad_k(client, bundle, k):
    response = client.get(f"/users/{bundle.encoders.users[0]}/recommendations", params={"k": k})
    assert response.status_code == 422
    assert "detail" in response.json()


def test_unknown_user_is_404_naming_the_id(client):
    response = client.get("/users/987654321/recommendations")
    assert response.status_code == 404
    assert "987654321" in response.json()["detail"]


def test_unknown_user_with_popular_fallback(client, bundle):
    body = client.get("/users/987654321/recommendations", params={"k": 5, "fallback": "popular"}).json()
    assert body["source"] == "popular"
    ranked = [r["predicted_rating"] for r in body["recommendations"]]
    assert len(ranked) == 5 and ranked == sorted(ranked, reverse=True)


def test_popularity_is_damped_so_a_few_perfect_votes_do_not_win(client, bundle):
    body = client.get("/users/987654321/recommendations", params={"k": 1, "fallback": "popular"}).json()
    top = body["recommendations"][0]["movie_id"]
    counts = np.bincount(bundle.ratings.movies, minlength=len(bundle.encoders.movies))
    assert counts[bundle.encoders.movies.index(top)] >= np.median(counts)


def test_predict_matches_model_predict_in_request_order(client, bundle):
    rng = np.random.default_rng(3)
    users = rng.integers(0, len(bundle.encoders.users), 20)
    movies = rng.integers(0, len(bundle.encoders.movies), 20)
    pairs = [
        {"user_id": bundle.encoders.users[u], "movie_id": bundle.encoders.movies[m]}
        for u, m in zip(users, movies, strict=True)
    ]
    body = client.post("/predict", json={"pairs": pairs}).json()
    expected = bundle.encoders.to_stars(
        bundle.model.predict(np.stack([users, movies], 1).astype(np.int32), verbose=0).reshape(-1)
    )
    assert [(p["user_id"], p["movie_id"]) for p in body["predictions"]] == [
        (p["user_id"], p["movie_id"]) for p in pairs
    ]
    np.testing.assert_allclose([p["predicted_rating"] for p in body["predictions"]], expected, atol=1e-3)
    assert all(p["error"] is None for p in body["predictions"])


def test_predict_unknown_ids_fail_alone(client, bundle):
    known_user, known_movie = bundle.encoders.users[0], bundle.encoders.movies[0]
    pairs = [
        {"user_id": 555555555, "movie_id": known_movie},
        {"user_id": known_user, "movie_id": known_movie},
        {"user_id": known_user, "movie_id": 444444444},
    ]
    predictions = client.post("/predict", json={"pairs": pairs}).json()["predictions"]
    assert predictions[0]["predicted_rating"] is None and "user_id 555555555" in predictions[0]["error"]
    assert predictions[1]["predicted_rating"] is not None and predictions[1]["error"] is None
    assert predictions[2]["predicted_rating"] is None and "movie_id 444444444" in predictions[2]["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"pairs": []},
        {},
        {"pairs": [{"user_id": 1}]},
        {"pairs": "x"},
        {"pairs": [{"user_id": "a", "movie_id": 1}]},
    ],
)
def test_predict_rejects_malformed_bodies(client, body):
    response = client.post("/predict", json=body)
    assert response.status_code == 422
    assert "detail" in response.json()


def test_predict_rejects_more_pairs_than_the_cap(client, bundle):
    pair = {"user_id": bundle.encoders.users[0], "movie_id": bundle.encoders.movies[0]}
    response = client.post("/predict", json={"pairs": [pair] * 51})
    assert response.status_code == 422
    assert "at most 50 pairs" in str(response.json()["detail"])
    assert client.post("/predict", json={"pairs": [pair] * 50}).status_code == 200


def test_predict_rejects_malformed_json(client):
    response = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_user_ratings_are_the_users_best_first(client, bundle):
    user_id = bundle.encoders.users[2]
    body = client.get(f"/users/{user_id}/ratings", params={"limit": 3}).json()
    movies, stars = bundle.ratings.of(2)
    assert [r["rating"] for r in body["ratings"]] == sorted(stars.tolist(), reverse=True)[:3]
    assert {r["movie_id"] for r in body["ratings"]} <= {bundle.encoders.movies[m] for m in movies}
    assert client.get("/users/987654321/ratings").status_code == 404
    assert client.get(f"/users/{user_id}/ratings", params={"limit": 0}).status_code == 422


def test_movie_details(client, bundle):
    row = 0
    movie_id = bundle.encoders.movies[row]
    body = client.get(f"/movies/{movie_id}").json()
    mask = bundle.ratings.movies == row
    assert body["title"] == bundle.catalogue.titles[row]
    assert body["ratings_count"] == int(mask.sum())
    assert body["mean_rating"] == pytest.approx(float(bundle.ratings.ratings[mask].mean()), abs=1e-3)
    assert client.get("/movies/444444444").status_code == 404


def test_model_health_readiness_and_metrics(client, bundle):
    assert client.get("/model").json()["version"] == bundle.version
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json() == {"status": "ready", "model_version": bundle.version}
    client.get(f"/users/{bundle.encoders.users[0]}/recommendations")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="GET",route="/users/{user_id}/recommendations",status="200"}' in text
    assert "http_request_duration_seconds_bucket" in text
    assert 'model_batch_size_count{kind="recommend"}' in text
    assert f'model_version_info{{version="{bundle.version}"}} 1.0' in text


def test_every_response_has_a_request_id(client):
    response = client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert re.fullmatch(r"[0-9a-f]{32}", client.get("/healthz").headers["x-request-id"])


def test_docs_pages_reference_no_external_host(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""", html)
        flat = [u for pair in urls for u in pair if u]
        assert flat, f"{page} loads nothing?"
        assert all(u.startswith("/") for u in flat), flat
        assert "cdn" not in html.lower()
        for url in flat:
            assert client.get(url).status_code == 200, url


def test_every_schema_field_has_a_description_and_an_example(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    ours = {name: s for name, s in schemas.items() if "ValidationError" not in name}
    assert {"Recommendations", "Predictions", "PredictBody", "Movie"} <= set(ours)
    for name, schema in ours.items():
        for field, spec in schema.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"
            if name != "Metadata" and "$ref" not in str(spec) and spec.get("type") != "array":
                assert "examples" in spec or "example" in spec, f"{name}.{field} has no example"


def test_the_model_is_keras_loadable_alone(bundle):
    model = keras.saving.load_model(bundle.path / "model.keras", safe_mode=True)
    assert model.input_shape == (None, 2) and model.output_shape == (None, 1)
