"""`GET /users/{user_id}/recommendations`: the model's top-k, the popular fallback, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.api import assert_clean_4xx
from tests.support.bundles import expected_top


def test_recommendations_equal_model_predict_over_the_catalogue(client, tiny_loaded):
    for user_id in tiny_loaded.encoders.users[:5]:
        body = client.get(f"/users/{user_id}/recommendations", params={"k": 10}).json()
        ids, stars = expected_top(tiny_loaded, user_id, 10)
        assert [r["movie_id"] for r in body["recommendations"]] == ids
        got = np.array([r["predicted_rating"] for r in body["recommendations"]])
        np.testing.assert_allclose(got, stars, atol=1e-3)
        assert [r["rank"] for r in body["recommendations"]] == list(range(1, 11))
        assert body["source"] == "model" and body["model_version"] == tiny_loaded.version


def test_recommendations_never_include_rated_movies(client, tiny_loaded):
    user_id = tiny_loaded.encoders.users[0]
    rated = {tiny_loaded.encoders.movies[m] for m in tiny_loaded.ratings.of(0)[0]}
    body = client.get(f"/users/{user_id}/recommendations", params={"k": 100}).json()
    recommended = [r["movie_id"] for r in body["recommendations"]]
    assert len(recommended) == min(100, len(tiny_loaded.encoders.movies) - len(rated))
    assert not rated & set(recommended)


def test_recommendations_carry_catalogue_titles_and_genres(client, tiny_loaded):
    body = client.get(f"/users/{tiny_loaded.encoders.users[1]}/recommendations", params={"k": 3}).json()
    for item in body["recommendations"]:
        row = tiny_loaded.encoders.movies.index(item["movie_id"])
        assert item["title"] == tiny_loaded.catalogue.titles[row]
        assert item["genres"] == tiny_loaded.catalogue.genres[row]


@pytest.mark.parametrize("k", ["0", "101", "-3", "2.5", "ten"])
def test_recommendations_reject_bad_k(client, tiny_loaded, k):
    response = client.get(f"/users/{tiny_loaded.encoders.users[0]}/recommendations", params={"k": k})
    assert response.status_code == 422
    assert "detail" in response.json()


def test_unknown_user_is_404_naming_the_id(client):
    response = client.get("/users/987654321/recommendations")
    assert response.status_code == 404
    assert "987654321" in response.json()["detail"]


def test_unknown_user_with_popular_fallback(client):
    body = client.get("/users/987654321/recommendations", params={"k": 5, "fallback": "popular"}).json()
    assert body["source"] == "popular"
    ranked = [r["predicted_rating"] for r in body["recommendations"]]
    assert len(ranked) == 5 and ranked == sorted(ranked, reverse=True)


def test_popularity_is_damped_so_a_few_perfect_votes_do_not_win(client, tiny_loaded):
    body = client.get("/users/987654321/recommendations", params={"k": 1, "fallback": "popular"}).json()
    top = body["recommendations"][0]["movie_id"]
    counts = np.bincount(tiny_loaded.ratings.movies, minlength=len(tiny_loaded.encoders.movies))
    assert counts[tiny_loaded.encoders.movies.index(top)] >= np.median(counts)


HOSTILE = [
    ("GET", "/users/abc/recommendations", None, {}),
    ("GET", "/users/1.5/recommendations", None, {}),
    ("GET", "/users/%F0%9F%8E%AC/recommendations", None, {}),
    ("GET", "/users/99999999999999999999999999999/recommendations", None, {}),
    ("GET", "/users/-1/recommendations", None, {}),
    ("GET", "/users/1/recommendations?k=-1", None, {}),
    ("GET", "/users/1/recommendations?k=1e3", None, {}),
    ("GET", "/users/1/recommendations?k=", None, {}),
    ("GET", "/users/1/recommendations?fallback=everything", None, {}),
    ("POST", "/users/1/recommendations", None, {}),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), HOSTILE)
def test_hostile_input_gets_a_clean_4xx(client, method, path, body, headers):
    assert_clean_4xx(client.request(method, path, content=body, headers=headers))
