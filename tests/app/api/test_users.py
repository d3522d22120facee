"""`GET /users/{user_id}/ratings` on the shared app: the data set's ratings, best first.

(The writes, and their merging with the data set's ratings, are in `test_ratings.py`.)"""

from __future__ import annotations

from tests.support.api import assert_clean_4xx


def test_user_ratings_are_the_users_best_first(client, tiny_loaded):
    user_id = tiny_loaded.encoders.users[2]
    body = client.get(f"/users/{user_id}/ratings", params={"limit": 3}).json()
    movies, stars = tiny_loaded.ratings.of(2)
    truth = {tiny_loaded.encoders.movies[m]: s for m, s in zip(movies.tolist(), stars.tolist(), strict=True)}
    listed = [(r["movie_id"], r["rating"]) for r in body["ratings"]]
    assert all(truth[movie] == rating for movie, rating in listed), "each movie with its own rating"
    assert [rating for _, rating in listed] == sorted(truth.values(), reverse=True)[:3]
    assert client.get("/users/987654321/ratings").status_code == 404
    assert client.get(f"/users/{user_id}/ratings", params={"limit": 0}).status_code == 422


def test_hostile_input_gets_a_clean_4xx(client):
    assert_clean_4xx(client.get("/users/1/ratings?limit=-5"))
