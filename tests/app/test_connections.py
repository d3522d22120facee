"""Connections of a real server process: timeouts for idle, slow headers and slow bodies, the
header size limit, the connection cap, and requests dropped when their client hangs up.

One server for the module, with limits small enough to test in seconds; raw sockets through
`benchmarks.attacks`' helpers (its scenarios measure the same at the issue's scale).
"""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.attacks import (
    answer,
    closed_after,
    pairs_body,
    probe,
    request,
    send,
)
from benchmarks.servers import HOST, Server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]
LIMITS = {
    "MAX_CONNECTIONS": "64",
    "MAX_HEADER_BYTES": "8192",
    "TIMEOUT_KEEP_ALIVE_S": "1",
    "TIMEOUT_HEADERS_S": "1",
    "TIMEOUT_BODY_S": "1",
    "RELOAD_INTERVAL_S": "0",
}
# A deadline is checked every 0.25 s: a connection ends between 1 and 1.25 s, plus scheduling.
LATE = 2.5


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with Server(tiny_model_dir, LIMITS) as server:
        yield server


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(server):
    reader, writer = await asyncio.open_connection(HOST, server.port)
    waited = await closed_after(reader, 10)
    writer.close()
    assert waited is not None and 0.9 < waited < LATE, waited


async def test_a_header_sent_slowly_is_answered_408_at_the_header_timeout(server):
    reader, writer = await send(server.port, b"GET /healthz HTTP/1.1\r\n")

    async def drip() -> None:
        for _ in range(50):
            await asyncio.sleep(0.1)
            writer.write(b"x")

    dripping = asyncio.ensure_future(drip())
    status, _ = await answer(reader, 10)
    waited = await closed_after(reader, 5)
    dripping.cancel()
    writer.transport.abort()
    assert status == 408 and waited is not None


async def test_a_body_sent_slowly_is_answered_408_at_the_body_timeout(server):
    head = (
        b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    )
    reader, writer = await send(server.port, head + b'{"pairs": [')
    status, _ = await answer(reader, 10)
    writer.transport.abort()
    assert status == 408
    assert server.metric('http_connections_dropped_total{reason="body_timeout"}') >= 1


@pytest.mark.parametrize("ending", [True, False], ids=["whole", "never ending"])
async def test_a_header_over_the_limit_is_answered_431(server, ending):
    data = request("GET", "/healthz", headers=f"x-big: {'a' * 100_000}\r\n")
    reader, writer = await send(server.port, data if ending else data[:60_000])
    status, _ = await answer(reader, 10)
    writer.transport.abort()
    assert status == 431
    assert await asyncio.to_thread(probe, server.port) < 1


async def test_connections_past_the_cap_evict_the_longest_waiting_so_a_health_check_gets_in(server):
    held = [await asyncio.open_connection(HOST, server.port) for _ in range(300)]
    try:
        seconds = await asyncio.to_thread(probe, server.port)
        open_now = server.metric("http_connections")
    finally:
        for _, writer in held:
            writer.transport.abort()
    assert seconds < 1
    assert open_now <= 64
    assert server.metric('http_connections_dropped_total{reason="evicted"}') >= 300 - 64


async def test_a_request_whose_client_hangs_up_is_dropped_before_the_model_and_recorded_499(
    server, tiny_model_dir
):
    body = request("POST", "/predict", pairs_body(tiny_model_dir, 10_000))
    computed = server.metric('model_batch_size_sum{kind="predict"}')
    clients = [await send(server.port, body) for _ in range(40)]
    await asyncio.sleep(0.05)
    for _, writer in clients:
        writer.transport.abort()
    await asyncio.sleep(2)
    assert await asyncio.to_thread(probe, server.port) < 1
    computed = server.metric('model_batch_size_sum{kind="predict"}') - computed
    gone = server.metric('http_requests_total{method="POST",route="/predict",status="499"}')
    refused = server.metric('http_requests_total{method="POST",route="/predict",status="400"}')
    assert computed < 20, "most were waiting for the parse thread or the model when their client left"
    assert gone >= 40 - computed and refused == 0


async def test_a_refused_body_is_read_to_its_end_so_the_client_sees_the_answer_and_can_go_on(server):
    """413 at once for a 3 MB body (MAX_BODY_BYTES is 2 MB): the client, still sending, reads it
    instead of a reset; the rest is read and dropped, and the connection serves the next request."""
    reader, writer = await send(server.port, request("POST", "/predict", b"[" + b" " * 3_000_000 + b"]"))
    status, _ = await answer(reader, 10)
    writer.write(request("GET", "/healthz"))
    again, _ = await answer(reader, 10)
    writer.transport.abort()
    assert (status, again) == (413, 200)
