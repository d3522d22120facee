"""`GET /users/{user_id}/ratings`: what a user rated, best first."""

from __future__ import annotations

from tests.support.api import assert_clean_4xx


def test_user_ratings_are_the_users_best_first(client, tiny_loaded):
    user_id = tiny_loaded.encoders.users[2]
    body = client.get(f"/users/{user_id}/ratings", params={"limit": 3}).json()
    movies, stars = tiny_loaded.ratings.of(2)
    assert [r["rating"] for r in body["ratings"]] == sorted(stars.tolist(), reverse=True)[:3]
    assert {r["movie_id"] for r in body["ratings"]} <= {tiny_loaded.encoders.movies[m] for m in movies}
    assert client.get("/users/987654321/ratings").status_code == 404
    assert client.get(f"/users/{user_id}/ratings", params={"limit": 0}).status_code == 422


def test_hostile_input_gets_a_clean_4xx(client):
    assert_clean_4xx(client.get("/users/1/ratings?limit=-5"))
