"""`POST /predict`: stars for pairs in request order, unknown ids alone, malformed bodies refused."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from app.api.routes import predictions
from app.schemas import PredictBody
from tests.support.api import assert_clean_4xx


def test_predict_matches_model_predict_in_request_order(client, tiny_loaded):
    rng = np.random.default_rng(3)
    users = rng.integers(0, len(tiny_loaded.encoders.users), 20)
    movies = rng.integers(0, len(tiny_loaded.encoders.movies), 20)
    pairs = [
        {"user_id": tiny_loaded.encoders.users[u], "movie_id": tiny_loaded.encoders.movies[m]}
        for u, m in zip(users, movies, strict=True)
    ]
    body = client.post("/predict", json={"pairs": pairs}).json()
    expected = tiny_loaded.encoders.to_stars(
        tiny_loaded.model.predict(np.stack([users, movies], 1).astype(np.int32), verbose=0)["rating"].reshape(
            -1
        )
    )
    assert [(p["user_id"], p["movie_id"]) for p in body["predictions"]] == [
        (p["user_id"], p["movie_id"]) for p in pairs
    ]
    np.testing.assert_allclose([p["predicted_rating"] for p in body["predictions"]], expected, atol=1e-3)
    assert all(p["error"] is None for p in body["predictions"])


def test_predict_unknown_ids_fail_alone(client, tiny_loaded):
    known_user, known_movie = tiny_loaded.encoders.users[0], tiny_loaded.encoders.movies[0]
    pairs = [
        {"user_id": 555555555, "movie_id": known_movie},
        {"user_id": known_user, "movie_id": known_movie},
        {"user_id": known_user, "movie_id": 444444444},
    ]
    predictions = client.post("/predict", json={"pairs": pairs}).json()["predictions"]
    assert predictions[0]["predicted_rating"] is None and "user_id 555555555" in predictions[0]["error"]
    assert predictions[1]["predicted_rating"] is not None and predictions[1]["error"] is None
    assert predictions[2]["predicted_rating"] is None and "movie_id 444444444" in predictions[2]["error"]


def test_huge_ids_are_unknown_not_errors(client):
    pairs = [{"user_id": 10**30, "movie_id": -(10**30)}]
    prediction = client.post("/predict", json={"pairs": pairs}).json()["predictions"][0]
    assert prediction["predicted_rating"] is None and "unknown user_id" in prediction["error"]


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


def test_predict_rejects_more_pairs_than_the_cap(client, tiny_loaded):
    pair = {"user_id": tiny_loaded.encoders.users[0], "movie_id": tiny_loaded.encoders.movies[0]}
    response = client.post("/predict", json={"pairs": [pair] * 51})
    assert response.status_code == 422
    assert "at most 50 pairs" in str(response.json()["detail"])
    assert client.post("/predict", json={"pairs": [pair] * 50}).status_code == 200


def test_a_body_with_more_pairs_than_the_cap_is_refused_before_it_is_parsed(client, tiny_loaded, monkeypatch):
    """Thousands of pair objects built only to be refused made 1,000 such bodies cost a gigabyte."""
    parsed = []
    real_parse = predictions.parse_predict_body
    monkeypatch.setattr(predictions, "parse_predict_body", lambda body: parsed.append(1) or real_parse(body))
    pair = {"user_id": tiny_loaded.encoders.users[0], "movie_id": tiny_loaded.encoders.movies[0]}
    response = client.post("/predict", json={"pairs": [pair] * 51})
    assert response.status_code == 422 and "at most 50 pairs" in str(response.json()["detail"])
    assert parsed == []
    assert client.post("/predict", json={"pairs": [pair] * 50}).status_code == 200 and parsed == [1]


def test_predict_rejects_malformed_json(client):
    response = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


JSON = {"content-type": "application/json"}
HOSTILE = [
    (b"", JSON),
    (b'{"pairs": [', JSON),
    (b"\xff\xfe\x00", JSON),
    (b"pairs=1", {"content-type": "application/x-www-form-urlencoded"}),
    (b'{"pairs": [{"user_id": 1, "movie_id": 1}]}', {"content-type": "text/plain"}),
    (b"[]", JSON),
    (b'{"pairs": null}', JSON),
    (b'{"pairs": [{"user_id": 1.5, "movie_id": 1}]}', JSON),
    (b'{"pairs": [{"user_id": "\xc3\xa9", "movie_id": 1}]}', JSON),
    (b'{"pairs": [{"user_id": 1, "movie_id": 1, "x": 2}]}', JSON),
    (b'{"pairs": [{"user_id": 1}], "extra": true}', JSON),
    (b'{"pairs": [[1, 2]]}', JSON),
    (b'{"pairs": [{"user_id": 1e999, "movie_id": 1}]}', JSON),
    (b"[" * 10_000 + b"]" * 10_000, JSON),
]


@pytest.mark.parametrize(("body", "headers"), HOSTILE)
def test_hostile_input_gets_a_clean_4xx(client, body, headers):
    assert_clean_4xx(client.post("/predict", content=body, headers=headers))


@pytest.mark.parametrize(
    "body",
    [
        b'{"pairs": [{"user_id": 1, "movie_id": 318}, {"movie_id": 2, "user_id": 3}]}',
        b'{"pairs": [{"user_id": 7.0, "movie_id": 318}]}',
        b'{"pairs": [{"user_id": -4, "movie_id": 99999999999999999999999}]}',
        b'{"pairs": [{"user_id": true, "movie_id": 318}]}',
        b'{"pairs": [{"user_id": "7", "movie_id": 318}]}',
        b'{"pairs": [{"user_id": 1, "movie_id": 318, "user": 2}]}',
        b'{"pairs": [{"user_id": 1}]}',
        b'{"pairs": []}',
        b'{"pairs": [{"user_id": 1, "movie_id": 318}], "more": []}',
        b'{"pairs": {"user_id": 1, "movie_id": 318}}',
    ],
)
def test_the_fast_body_reader_accepts_and_refuses_exactly_what_the_schema_does(body):
    """Usual bodies skip pydantic's model per pair; what they are read as must not change."""
    try:
        expected = [(p.user_id, p.movie_id) for p in PredictBody.model_validate_json(body).pairs]
    except ValidationError:
        with pytest.raises(predictions.InvalidBody):
            predictions.parse_predict_body(body)
        return
    pairs = predictions.parse_predict_body(body).pairs
    assert list(zip(pairs.users, pairs.movies, strict=True)) == expected
    assert [(p.user_id, p.movie_id) for p in pairs] == expected
    assert all(type(i) is int for pair in expected for i in pair)
