"""Ids are plain digits in every path, and JSON integers (never `true`) in bodies.

A lax integer parser reads `1_0` as 10 and `+1`, `1.0` or `true` as 1: a request for one user
would answer for another.
"""

from __future__ import annotations

import pytest

from tests.support.api import assert_clean_4xx

LAX = ["1_0", "+1", "1.0", "true", " 1", "0x1", "1e1", "%201"]
ROUTES = [
    ("GET", "/users/{id}/recommendations", None),
    ("GET", "/users/{id}/ratings", None),
    ("POST", "/users/{id}/ratings", {"ratings": [{"movie_id": 1, "rating": 4}]}),
    ("PUT", "/users/{id}/ratings/1", {"rating": 4}),
    ("PUT", "/users/1/ratings/{id}", {"rating": 4}),
    ("DELETE", "/users/{id}/ratings/1", None),
    ("DELETE", "/users/1/ratings/{id}", None),
    ("GET", "/movies/{id}", None),
]


@pytest.mark.parametrize("lax", LAX)
@pytest.mark.parametrize(("method", "route", "body"), ROUTES)
def test_a_lax_id_in_a_path_is_refused_on_every_route(client, method, route, body, lax):
    response = client.request(method, route.format(id=lax), json=body)
    assert_clean_4xx(response)
    assert response.status_code == 422, response.text


def test_plain_digits_are_an_id(client, tiny_loaded):
    movie = tiny_loaded.encoders.movies[0]
    assert client.get(f"/movies/{movie}").json()["movie_id"] == movie
    assert client.get(f"/movies/0{movie}").json()["movie_id"] == movie  # a leading zero is still digits


@pytest.mark.parametrize("lax", ["true", "false", '"1"', "1.5", "[1]", "null"])
@pytest.mark.parametrize("field", ["user_id", "movie_id"])
def test_a_lax_id_in_a_predict_body_is_refused(client, tiny_loaded, field, lax):
    pair = {"user_id": tiny_loaded.encoders.users[0], "movie_id": tiny_loaded.encoders.movies[0]}
    values = {name: lax if name == field else str(pair[name]) for name in pair}
    text = f'{{"pairs": [{{"user_id": {values["user_id"]}, "movie_id": {values["movie_id"]}}}]}}'
    response = client.post("/predict", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "pairs", 0, field]
