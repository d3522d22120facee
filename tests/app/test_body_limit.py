"""Request bodies over `MAX_BODY_BYTES` are refused before they are read."""

from __future__ import annotations

import pytest

from app.request_limits import RequestLimits

LIMIT = 100_000
CHUNK = 10_000


def test_a_large_body_is_refused_with_413_before_it_is_read(client):
    response = client.post("/predict", content=b"x" * 200_000, headers={"content-type": "application/json"})
    assert response.status_code == 413
    chunks = (b"x" * 50_000 for _ in range(5))  # no content-length: counted while streaming
    response = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413


async def refused_after(headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[int, int]:
    """The status sent and the body chunks read when a handler that reads its whole body (as
    FastAPI does) sits behind the limits and the client sends `chunks` chunks of `CHUNK` bytes."""
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": reads < chunks}

    async def handler(scope, receive, send) -> None:
        while (message := await receive())["type"] == "http.request" and message["more_body"]:
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    limits = RequestLimits(
        handler, max_body_bytes=LIMIT, max_inflight_body_bytes=10 * LIMIT, request_timeout_s=5
    )
    scope = {"type": "http", "path": "/predict", "method": "POST", "headers": headers}
    await limits(scope, receive, send)
    return sent[0]["status"], reads


@pytest.mark.anyio
async def test_a_declared_length_over_the_limit_is_refused_before_any_of_the_body_is_read():
    declared = str(50 * CHUNK).encode()
    assert await refused_after([(b"content-length", declared)], chunks=50) == (413, 0)


@pytest.mark.anyio
async def test_a_streamed_body_is_refused_at_the_first_chunk_past_the_limit_not_buffered_whole():
    chunked = [(b"transfer-encoding", b"chunked")]
    assert await refused_after(chunked, chunks=50) == (413, LIMIT // CHUNK + 1)
