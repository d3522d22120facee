"""`GET /users/{user_id}/recommendations`: the model's top-k, the popular fallback, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support.api import assert_clean_4xx
from tests.support.bundles import expected_top


@pytest.mark.parametrize("rank_by", ["ranking", "rating"])
def test_recommendations_equal_model_predict_over_the_catalogue(client, tiny_loaded, rank_by):
    """Served top-k is the top-k of the saved model's outputs, ordered by ranking unless asked."""
    params = {"k": 10} if rank_by == "ranking" else {"k": 10, "rank_by": "rating"}
    for user_id in tiny_loaded.encoders.users[:5]:
        body = client.get(f"/users/{user_id}/recommendations", params=params).json()
        ids, stars, scores = expected_top(tiny_loaded, user_id, 10, rank_by)
        assert [r["movie_id"] for r in body["recommendations"]] == ids
        np.testing.assert_allclose([r["predicted_rating"] for r in body["recommendations"]], stars, atol=1e-3)
        np.testing.assert_allclose(
            [r["score"] for r in body["recommendations"]], scores, rtol=1e-4, atol=1e-5
        )
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


def test_unknown_user_with_popular_fallback_gets_the_most_rated_movies(client, tiny_loaded):
    """Popularity is the number of ratings (the evaluation's "most popular" too); the stars shown
    are each movie's mean rating."""
    body = client.get("/users/987654321/recommendations", params={"k": 5, "fallback": "popular"}).json()
    assert body["source"] == "popular"
    counts = np.bincount(tiny_loaded.ratings.movies, minlength=len(tiny_loaded.encoders.movies))
    expected = np.argsort(-counts, kind="stable")[:5]
    assert [r["movie_id"] for r in body["recommendations"]] == [
        tiny_loaded.encoders.movies[m] for m in expected
    ]
    assert [r["score"] for r in body["recommendations"]] == counts[expected].tolist()
    for item, row in zip(body["recommendations"], expected, strict=True):
        mean = tiny_loaded.ratings.ratings[tiny_loaded.ratings.movies == row].mean()
        assert item["predicted_rating"] == pytest.approx(mean, abs=1e-4)


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


@pytest.mark.parametrize("params", [{"k": 7}, {"k": 3, "explain": "true"}, {"k": 4, "rank_by": "rating"}])
def test_the_answer_is_exactly_the_documented_body(client, tiny_loaded, params):
    """The route writes its JSON directly: it must still be what the OpenAPI page documents."""
    from app.schemas import Recommendations

    body = client.get(f"/users/{tiny_loaded.encoders.users[4]}/recommendations", params=params).json()
    assert Recommendations.model_validate(body).model_dump(mode="json") == body
    fallback = client.get("/users/987654321/recommendations", params={"k": 2, "fallback": "popular"}).json()
    assert Recommendations.model_validate(fallback).model_dump(mode="json") == fallback


@pytest.mark.parametrize(
    ("usual", "declared"),
    [
        ("", "?rank_by=ranking"),
        ("?k=1", "?k=1&explain=false"),
        ("?k=10", "?rank_by=ranking&k=10"),
        ("?k=100", "?k=100&explain=0"),
    ],
)
def test_the_usual_request_is_answered_as_the_declared_route_answers_it(client, tiny_loaded, usual, declared):
    """`?k=N` skips FastAPI's parameter handling (`UsualRoute`); the answer must not change."""
    for user_id in tiny_loaded.encoders.users[:3]:
        fast = client.get(f"/users/{user_id}/recommendations{usual}")
        slow = client.get(f"/users/{user_id}/recommendations{declared}")
        assert fast.status_code == slow.status_code == 200
        assert fast.json() == slow.json()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/users/{user}/recommendations?k=0", 422),
        ("/users/{user}/recommendations?k=101", 422),
        ("/users/{user}/recommendations?k=010", 200),
        ("/users/0/recommendations?k=10", 422),
        ("/users/0{user}/recommendations", 200),
        ("/users/9007199254740992/recommendations?k=10", 422),
        ("/users/9007199254740991/recommendations?k=10", 404),
        ("/users/{user}/recommendations?k=10&k=11", 200),
        ("/users/{user}/recommendations?k=1e1", 422),
    ],
)
def test_requests_the_usual_path_leaves_to_fastapi_are_still_read_as_declared(
    client, tiny_loaded, path, status
):
    response = client.get(path.format(user=tiny_loaded.encoders.users[0]))
    assert response.status_code == status, response.text
