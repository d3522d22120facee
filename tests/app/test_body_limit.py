"""Request bodies over `MAX_BODY_BYTES` are refused before they are read."""

from __future__ import annotations


def test_a_large_body_is_refused_with_413_before_it_is_read(client):
    response = client.post("/predict", content=b"x" * 200_000, headers={"content-type": "application/json"})
    assert response.status_code == 413
    chunks = (b"x" * 50_000 for _ in range(5))  # no content-length: counted while streaming
    response = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413
