"""`GET /movies/{movie_id}`: one movie of the catalogue with its rating figures."""

from __future__ import annotations

import pytest

from tests.support.api import assert_clean_4xx


def test_movie_details(client, tiny_loaded):
    row = 0
    movie_id = tiny_loaded.encoders.movies[row]
    body = client.get(f"/movies/{movie_id}").json()
    mask = tiny_loaded.ratings.movies == row
    assert body["title"] == tiny_loaded.catalogue.titles[row]
    assert body["ratings_count"] == int(mask.sum())
    assert body["mean_rating"] == pytest.approx(float(tiny_loaded.ratings.ratings[mask].mean()), abs=1e-3)
    assert client.get("/movies/444444444").status_code == 404


@pytest.mark.parametrize("path", ["/movies/%00", "/movies/1e400"])
def test_hostile_input_gets_a_clean_4xx(client, path):
    assert_clean_4xx(client.get(path))
