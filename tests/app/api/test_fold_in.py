"""Recommendations follow stored ratings at once: fold-in for strangers, refits for known users."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.data import TASTE_GENRES


@pytest.fixture(scope="module")
def taste_client(taste_model_dir: Path, tmp_path_factory):
    """The app over the genre-taste bundle, with a feedback database of its own."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    settings = Settings(
        model_dir=taste_model_dir, state_dir=tmp_path_factory.mktemp("fold-in-state"), reload_interval_s=0
    )
    with TestClient(create_app(settings)) as client:
        yield client


def listing(client, user_id: int, **params) -> dict:
    response = client.get(f"/users/{user_id}/recommendations", params={"k": 10, **params})
    assert response.status_code == 200, response.text
    return response.json()


def genre_movies(client, genre: str) -> list[int]:
    """Movie ids of one genre, most-rated first (from the popular fallback of a stranger)."""
    popular = listing(client, 999_999_999, k=100, fallback="popular")["recommendations"]
    return [item["movie_id"] for item in popular if item["genres"] == [genre]]


def test_a_stranger_who_rates_five_movies_of_a_genre_gets_a_list_that_follows_them(taste_client):
    stranger, genre = 70_001, TASTE_GENRES[2]
    assert taste_client.get(f"/users/{stranger}/recommendations").status_code == 404
    rated, previous = [], None
    for movie in genre_movies(taste_client, genre)[:5]:
        response = taste_client.put(f"/users/{stranger}/ratings/{movie}", json={"rating": 5})
        assert response.status_code == 200, response.text
        rated.append(movie)
        body = listing(taste_client, stranger)
        assert body["source"] == "fold-in"
        listed = [item["movie_id"] for item in body["recommendations"]]
        assert not set(rated) & set(listed), "a rated movie is never recommended back"
        assert listed != previous, "each rating changes the list"
        previous = listed
    leaning = sum(item["genres"] == [genre] for item in body["recommendations"])
    assert leaning >= 8, f"{leaning} of 10 recommendations are {genre}"


def test_a_known_users_new_rating_moves_their_list_and_its_removal_restores_it(taste_client):
    user = 7
    before = listing(taste_client, user)
    assert before["source"] == "model"
    first = before["recommendations"][0]["movie_id"]
    assert taste_client.put(f"/users/{user}/ratings/{first}", json={"rating": 1}).status_code == 200
    after = listing(taste_client, user)
    assert after["source"] == "model"
    assert first not in [item["movie_id"] for item in after["recommendations"]]
    assert taste_client.delete(f"/users/{user}/ratings/{first}").status_code == 204
    assert listing(taste_client, user) == before


def test_explanations_name_a_movie_the_user_rated_highly(taste_client):
    stranger = 70_002
    liked = genre_movies(taste_client, TASTE_GENRES[0])[:3]
    body = {"ratings": [{"movie_id": movie, "rating": 4.5} for movie in liked]}
    assert taste_client.post(f"/users/{stranger}/ratings", json=body).status_code == 200
    explained = listing(taste_client, stranger, explain="true")["recommendations"]
    assert explained and all(item["because"]["movie_id"] in liked for item in explained)
    assert all(item["because"] is None for item in listing(taste_client, stranger)["recommendations"])
