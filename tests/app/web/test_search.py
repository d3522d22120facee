"""`GET /movies?query=`: title search, forgiving of case, accents and punctuation, most-rated first."""

from __future__ import annotations

import numpy as np
import pytest

from app.titles import TitleIndex, fold
from tests.support.api import assert_clean_4xx

TITLES = [
    "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)",
    "Spider-Man (2002)",
    "Matrix, The (1999)",
    "Straße (1990)",
    "\uff21\uff22\uff23 Murders (1992)",  # full-width letters: NFKD makes them plain
    "Alpha (2018)",
    "Beta (2018)",
    "Amélie 2: Le Retour (2030)",
]


def found(index: TitleIndex, query: str, limit: int = 10) -> list[str]:
    return [TITLES[row] for row in index.search(query, limit)]


@pytest.fixture(scope="module")
def index() -> TitleIndex:
    return TitleIndex(TITLES, np.arange(len(TITLES)))


@pytest.mark.parametrize(
    ("query", "title"),
    [
        ("amelie", TITLES[0]),
        ("AMÉLIE poulain", TITLES[0]),
        ("ame\u0301lie poulain", TITLES[0]),  # a combining accent, as some keyboards send it
        ("d'amélie", TITLES[0]),
        ("spider man", TITLES[1]),
        ("SPIDER-MAN", TITLES[1]),
        ("spiderman 2002", None),
        ("the matrix", TITLES[2]),
        ("matrix (1999)", TITLES[2]),
        ("strasse", TITLES[3]),
        ("abc murders", TITLES[4]),
        ("alpha beta", None),  # words of two titles are not one title
    ],
)
def test_a_title_is_found_whatever_the_case_accents_punctuation_and_word_order(index, query, title):
    expected = [title] if title else []
    assert [t for t in found(index, query) if t != TITLES[7]] == expected


def test_matches_come_in_index_order_up_to_the_limit(index):
    assert found(index, "amelie") == [TITLES[0], TITLES[7]]
    assert found(index, "amelie", limit=1) == [TITLES[0]]
    reversed_index = TitleIndex(TITLES, np.arange(len(TITLES))[::-1])
    assert found(reversed_index, "amelie") == [TITLES[7], TITLES[0]]


@pytest.mark.parametrize("query", ["", "   ", "!!!", "(", ".*", "\x00", "\n", "\u202e"])
def test_a_query_without_a_letter_or_digit_matches_nothing(index, query):
    assert found(index, query) == []


def test_fold_keeps_letters_and_digits_only():
    assert fold("  Amélie,\tLe  FABULEUX—destin (2001) ") == "amelie le fabuleux destin 2001"


# Through the API, on the tiny bundle: titles like 'Movie 123, The "Sequel" (1950)'.


def search(client, **params) -> dict:
    response = client.get("/movies", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_results_are_the_most_rated_first_with_the_movie_routes_fields(client, tiny_loaded):
    body = search(client, query="movie sequel", limit=100)
    counts = [movie["ratings_count"] for movie in body["movies"]]
    assert body["query"] == "movie sequel" and len(counts) == 100
    assert counts == sorted(counts, reverse=True)
    assert counts[0] == np.bincount(tiny_loaded.ratings.movies).max()
    for movie in body["movies"][:3]:
        assert movie == client.get(f"/movies/{movie['movie_id']}").json()


def test_without_a_query_the_most_rated_movies_come(client):
    top = search(client, limit=5)
    assert top["query"] is None
    assert search(client, query="  ", limit=5)["movies"] == top["movies"]
    assert top["movies"] == search(client, query="MOVIE", limit=5)["movies"]


def test_one_title_is_found_by_its_own_words(client, tiny_loaded):
    row = len(tiny_loaded.catalogue.titles) // 2
    title = tiny_loaded.catalogue.titles[row]  # Movie <id>, The "Sequel" (<year>)
    words = title.upper().replace(",", " ").split()
    hits = search(client, query=" ".join(reversed(words)))["movies"]
    assert tiny_loaded.encoders.movies[row] in [movie["movie_id"] for movie in hits]
    assert all(fold(word) in fold(movie["title"]) for movie in hits for word in words)


@pytest.mark.parametrize(
    "params",
    [
        {"query": "movie", "limit": "0"},
        {"query": "movie", "limit": "101"},
        {"query": "movie", "limit": "ten"},
        {"query": "movie", "limit": "-1"},
        {"query": "x" * 101},
    ],
)
def test_bad_limits_and_long_queries_are_422(client, params):
    response = client.get("/movies", params=params)
    assert response.status_code == 422
    assert_clean_4xx(response)


@pytest.mark.parametrize(
    "query",
    [
        "%00",
        "%ED%A0%80",
        "%FF",
        "'%3B DROP TABLE movies%3B--",
        "%3Cscript%3E",
        ".*(",
        "%E2%80%AE%F0%9F%8E%AC",
    ],
)
def test_hostile_queries_are_answered_plainly(client, query):
    response = client.get(f"/movies?query={query}&limit=3")
    assert response.status_code == 200, response.text
    assert response.json()["movies"] == []
