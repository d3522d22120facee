"""The ratings routes over HTTP, in process, against the tiny bundle: each test on both engines."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.support.api import assert_clean_4xx

pytestmark = pytest.mark.anyio

NEW_USER = 2**53 - 1  # unknown to the bundle, and the largest id accepted


@pytest.fixture
def bundle(tiny_loaded):
    return tiny_loaded


@pytest.fixture
def movies(tiny_loaded) -> list[int]:
    return tiny_loaded.encoders.movies


async def stored_of(api, user_id: int) -> dict[int, float]:
    body = (await api.get(f"/users/{user_id}/ratings", params={"limit": 100})).json()
    return {r["movie_id"]: r["rating"] for r in body.get("ratings", []) if r["source"] == "feedback"}


async def test_put_stores_a_rating_and_answers_it(api, movies):
    response = await api.put(f"/users/{NEW_USER}/ratings/{movies[0]}", json={"rating": 4.5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == NEW_USER and body["movie_id"] == movies[0] and body["rating"] == 4.5
    assert datetime.fromisoformat(body["rated_at"]).tzinfo is not None
    assert await stored_of(api, NEW_USER) == {movies[0]: 4.5}


async def test_put_again_is_idempotent_and_a_new_value_replaces(api, movies):
    path = f"/users/5/ratings/{movies[1]}"
    first = (await api.put(path, json={"rating": 3})).json()
    assert (await api.put(path, json={"rating": 3.0})).json() == first
    replaced = (await api.put(path, json={"rating": 1.5})).json()
    assert replaced["rating"] == 1.5 and replaced["rated_at"] > first["rated_at"]
    assert await stored_of(api, 5) == {movies[1]: 1.5}


async def test_put_of_a_movie_the_catalogue_does_not_know_is_404_and_stores_nothing(api):
    response = await api.put("/users/5/ratings/444444444", json={"rating": 4})
    assert response.status_code == 404 and "444444444" in response.json()["detail"]
    assert (await api.get("/users/5/ratings")).status_code == 404


async def test_post_stores_all_in_order(api, movies):
    items = [{"movie_id": m, "rating": r} for m, r in zip(movies[:4], (5, 0.5, 3.5, 2), strict=True)]
    response = await api.post("/users/6/ratings", json={"ratings": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == 6
    assert [(r["movie_id"], r["rating"]) for r in body["ratings"]] == [
        (i["movie_id"], i["rating"]) for i in items
    ]
    assert await stored_of(api, 6) == {i["movie_id"]: i["rating"] for i in items}


BAD_ITEMS = [
    ({"movie_id": 444444444, "rating": 4}, "unknown movie_id 444444444"),
    ({"movie_id": "FIRST", "rating": 1}, "listed twice (first at index 0)"),
    ({"movie_id": 1.5, "rating": 4}, "integer"),
    ({"movie_id": "THIRD", "rating": 4.25}, "multiple of 0.5"),
    ({"movie_id": "THIRD", "rating": 2.0000000001}, "in half stars"),
    ({"movie_id": "THIRD", "rating": 5.5}, "less than or equal to 5"),
    ({"movie_id": "THIRD", "rating": "4"}, "number"),
    ({"movie_id": "THIRD"}, "Field required"),
    ({"movie_id": "THIRD", "rating": 4, "extra": 1}, "Extra inputs"),
]


async def test_post_names_a_bad_item_by_its_index_and_stores_none(api, movies):
    named = {"FIRST": movies[0], "THIRD": movies[2]}
    for bad, says in BAD_ITEMS:
        items = [{"movie_id": m, "rating": 4} for m in movies[:2]]
        items.append({**bad, "movie_id": named.get(bad["movie_id"], bad["movie_id"])})
        response = await api.post("/users/7/ratings", json={"ratings": items})
        assert response.status_code == 422, (bad, response.text)
        errors = response.json()["detail"]
        assert any(e["loc"][:3] == ["body", "ratings", 2] and says in e["msg"] for e in errors), (bad, errors)
    assert await stored_of(api, 7) == {}


async def test_post_takes_1_to_1000_ratings(api, movies):
    for count in (0, 1001):
        items = [{"movie_id": movies[i % len(movies)], "rating": 4} for i in range(count)]
        response = await api.post("/users/8/ratings", json={"ratings": items})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "ratings"]


async def test_post_of_1000_ratings_in_one_go(api, bundle, tiny_model_dir):
    many = [{"movie_id": m, "rating": 0.5 + i % 10 / 2} for i, m in enumerate(bundle.encoders.movies)]
    response = await api.post("/users/9/ratings", json={"ratings": many})
    assert response.status_code == 200 and len(response.json()["ratings"]) == len(many)


async def test_delete_removes_a_stored_rating(api, movies):
    await api.put(f"/users/10/ratings/{movies[0]}", json={"rating": 2})
    response = await api.delete(f"/users/10/ratings/{movies[0]}")
    assert response.status_code == 204 and response.content == b""
    again = await api.delete(f"/users/10/ratings/{movies[0]}")
    assert again.status_code == 404 and "no stored rating" in again.json()["detail"]


async def test_ratings_merge_the_data_set_and_stored_newest_winning(api, bundle):
    user_id = bundle.encoders.users[0]
    rows, stars = bundle.ratings.of(0)
    dataset = {
        bundle.encoders.movies[r]: float(s) for r, s in zip(rows.tolist(), stars.tolist(), strict=True)
    }
    rated, lowest = next(iter(dataset)), min(dataset.values())
    unrated = next(m for m in bundle.encoders.movies if m not in dataset)
    await api.put(f"/users/{user_id}/ratings/{rated}", json={"rating": 5})
    await api.put(f"/users/{user_id}/ratings/{rated}", json={"rating": lowest})  # the newest wins
    await api.put(f"/users/{user_id}/ratings/{unrated}", json={"rating": 5})
    body = (await api.get(f"/users/{user_id}/ratings", params={"limit": 100})).json()
    listed = {r["movie_id"]: r for r in body["ratings"]}
    assert body["feedback"] == "ok"
    assert len(body["ratings"]) == min(100, len(dataset) + 1)
    assert listed[unrated]["source"] == "feedback" and listed[unrated]["rating"] == 5
    assert body["ratings"][0]["movie_id"] == unrated, "a stored 5 comes before the data set's 5s"
    if rated in listed:
        assert listed[rated]["source"] == "feedback" and listed[rated]["rating"] == lowest
    assert [r["rating"] for r in body["ratings"]] == sorted(
        (r["rating"] for r in body["ratings"]), reverse=True
    )
    assert all((r["rated_at"] is None) == (r["source"] == "dataset") for r in body["ratings"])
    assert len((await api.get(f"/users/{user_id}/ratings", params={"limit": 2})).json()["ratings"]) == 2


async def test_a_user_with_neither_data_set_nor_stored_ratings_is_404(api):
    response = await api.get("/users/987654321/ratings")
    assert response.status_code == 404 and "987654321" in response.json()["detail"]


HOSTILE = [
    ("PUT", "/users/0/ratings/1", {"rating": 4}),
    ("PUT", "/users/-3/ratings/1", {"rating": 4}),
    ("PUT", f"/users/{2**53}/ratings/1", {"rating": 4}),
    ("PUT", "/users/99999999999999999999999999/ratings/1", {"rating": 4}),
    ("PUT", "/users/1.5/ratings/1", {"rating": 4}),
    ("PUT", "/users/1/ratings/0", {"rating": 4}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": 0}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": 0.25}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": 4.500000000000001}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": 10}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": -1}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": "4.5"}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": True}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": None}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": [4]}),
    ("PUT", "/users/1/ratings/MOVIE", {}),
    ("PUT", "/users/1/ratings/MOVIE", {"rating": 4, "user_id": 2}),
    ("PUT", "/users/1/ratings/MOVIE", b'{"rating": NaN}'),
    ("PUT", "/users/1/ratings/MOVIE", b'{"rating": Infinity}'),
    ("PUT", "/users/1/ratings/MOVIE", b'{"rating": 1e999}'),
    ("PUT", "/users/1/ratings/MOVIE", b'{"rating": 4'),
    ("PUT", "/users/1/ratings/MOVIE", b"4.5"),
    ("PUT", "/users/1/ratings/MOVIE", b"\xff\xfe"),
    ("POST", "/users/1/ratings", {"ratings": "all"}),
    ("POST", "/users/1/ratings", {"ratings": [[1, 4]]}),
    ("POST", "/users/1/ratings", {"ratings": [{"movie_id": 2**63, "rating": 4}]}),
    ("POST", "/users/1/ratings", {"ratings": [{"movie_id": "MOVIE", "rating": 4}] * 100_000}),
    ("POST", "/users/1/ratings", [{"movie_id": "MOVIE", "rating": 4}]),
    ("POST", "/users/0/ratings", {"ratings": [{"movie_id": "MOVIE", "rating": 4}]}),
    ("DELETE", "/users/0/ratings/1", None),
    ("DELETE", "/users/1/ratings/-1", None),
    ("GET", "/users/0/ratings", None),
    ("GET", f"/users/{2**53}/ratings", None),
]


async def test_hostile_input_gets_a_clear_4xx_and_changes_nothing(api, movies):
    for method, path, body in HOSTILE:
        content = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        if content is not None:
            content = content.replace(b'"MOVIE"', str(movies[0]).encode())
        headers = {"content-type": "application/json"}
        response = await api.request(
            method, path.replace("MOVIE", str(movies[0])), content=content, headers=headers
        )
        assert_clean_4xx(response)
    assert await stored_of(api, 1) == {}
