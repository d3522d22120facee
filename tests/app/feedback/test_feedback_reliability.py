"""What the feedback store promises under stress: kill -9, many writers, a database down or hung."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from app.main import create_app
from benchmarks.servers import Server
from tests.support.api import serving
from tests.support.feedback import feedback_settings

MOVIES_PER_USER = 100  # GET /users/{id}/ratings lists at most 100: each user's ratings fit in one answer


def test_every_acknowledged_write_survives_kill_9_of_the_server(
    tiny_model_dir, served_tiny_bundle, feedback_url
):
    """Writers keep writing (single PUTs and POST batches) while the server is killed with SIGKILL;
    after a restart every write that had been answered 200 is there."""
    movies = served_tiny_bundle.encoders.movies[:MOVIES_PER_USER]
    acknowledged: dict[tuple[int, int], float] = {}
    env = {"DATABASE_URL": feedback_url, "RELOAD_INTERVAL_S": "0"}

    def writer(url: str, user_id: int, batched: bool) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            step = 4 if batched else 1
            for start in range(0, len(movies), step):
                chunk = [(m, 0.5 + (user_id + m) % 10 / 2) for m in movies[start : start + step]]
                try:
                    if batched:
                        ratings = [{"movie_id": m, "rating": r} for m, r in chunk]
                        response = client.post(f"/users/{user_id}/ratings", json={"ratings": ratings})
                    else:
                        (m, r), *_ = chunk
                        response = client.put(f"/users/{user_id}/ratings/{m}", json={"rating": r})
                except httpx.TransportError:
                    return  # the server is gone
                if response.status_code == 200:
                    acknowledged.update({(user_id, m): r for m, r in chunk})

    with Server(tiny_model_dir, env) as server:
        writers = [
            threading.Thread(target=writer, args=(server.url, 5000 + i, i % 2 == 1), daemon=True)
            for i in range(8)
        ]
        for thread in writers:
            thread.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop(kill=True)  # SIGKILL, with writes in flight
        for thread in writers:
            thread.join(15)
    assert len(acknowledged) >= 300, "too few writes before the kill to prove anything"
    assert len(acknowledged) < 8 * len(movies), "the kill should land while writers are still busy"

    with Server(tiny_model_dir, env) as server:
        found: dict[tuple[int, int], float] = {}
        for user_id in {u for u, _ in acknowledged}:
            body = httpx.get(
                f"{server.url}/users/{user_id}/ratings", params={"limit": 100}, timeout=10
            ).json()
            found.update({(user_id, r["movie_id"]): r["rating"] for r in body["ratings"]})
    lost = {pair: stars for pair, stars in acknowledged.items() if found.get(pair) != stars}
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {list(lost.items())[:3]}"


@pytest.mark.anyio
async def test_32_concurrent_writers_of_5000_ratings_leave_exactly_5000_rows(
    feedback_app, api, served_tiny_bundle
):
    movies = served_tiny_bundle.encoders.movies
    writers, total = 32, 5000
    shares = [total // writers + (1 if w < total % writers else 0) for w in range(writers)]
    assert max(shares) <= len(movies)

    async def write(w: int) -> int:
        user_id, mine, sent = 100 + w, movies[: shares[w]], 0
        while sent < len(mine):
            if (sent // 20) % 2:  # alternately a batch of 19 ...
                chunk = mine[sent : sent + 19]
                ratings = [{"movie_id": m, "rating": 4.5} for m in chunk]
                response = await api.post(f"/users/{user_id}/ratings", json={"ratings": ratings})
            else:  # ... and single PUTs
                chunk = mine[sent : sent + 1]
                response = await api.put(f"/users/{user_id}/ratings/{chunk[0]}", json={"rating": 4.5})
            assert response.status_code == 200, response.text
            sent += len(chunk)
        return sent

    assert sum(await asyncio.gather(*(write(w) for w in range(writers)))) == total
    exported = await feedback_app.state.service.feedback.export()
    assert len(exported) == total
    assert len(set(zip(exported.user_ids.tolist(), exported.movie_ids.tolist(), strict=True))) == total


@pytest.mark.anyio
async def test_the_same_rating_written_concurrently_ends_as_one_row_holding_one_value(
    api, served_tiny_bundle
):
    movie_id = served_tiny_bundle.encoders.movies[3]
    values = [0.5 * k for k in range(1, 11)] * 4
    responses = await asyncio.gather(
        *(api.put(f"/users/77/ratings/{movie_id}", json={"rating": value}) for value in values)
    )
    assert {r.status_code for r in responses} == {200}
    body = (await api.get("/users/77/ratings", params={"limit": 100})).json()
    assert len(body["ratings"]) == 1 and body["ratings"][0]["rating"] in values


async def wait_for(check, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


@pytest.fixture
async def postgres_api(postgres, tiny_model_dir, served_tiny_bundle, monkeypatch):
    """The app on the PostgreSQL test server, database calls limited to 1 s."""
    monkeypatch.setattr("app.service.freeze_heap", lambda: None)
    postgres.ensure_running()
    settings = feedback_settings(tiny_model_dir, postgres.emptied_database(), database_timeout_s=1.0)
    app = create_app(settings, served_tiny_bundle)
    try:
        async with serving(app) as client:
            yield client
    finally:
        postgres.ensure_running()


async def check_degraded_service(api, bundle) -> None:
    """While the database is away: writes 503 with Retry-After, everything from the bundle works."""
    known, movie = bundle.encoders.users[0], bundle.encoders.movies[0]
    writes = [
        api.put(f"/users/{known}/ratings/{movie}", json={"rating": 3}),
        api.post(f"/users/{known}/ratings", json={"ratings": [{"movie_id": movie, "rating": 3}]}),
        api.delete(f"/users/{known}/ratings/{movie}"),
    ]
    started = time.monotonic()
    for response in await asyncio.gather(*writes):
        assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1, response.text
        assert "unavailable" in response.json()["detail"] and "/tmp" not in response.text
    assert time.monotonic() - started < 3, "database calls must give up within their timeout"
    ratings = await api.get(f"/users/{known}/ratings")
    assert ratings.status_code == 200 and ratings.json()["feedback"] == "unavailable"
    assert {r["source"] for r in ratings.json()["ratings"]} == {"dataset"}
    assert (await api.get("/users/31337/ratings")).status_code == 503, "stored ratings cannot be ruled out"
    assert (await api.get(f"/users/{known}/recommendations")).status_code == 200
    unknown = await api.get("/users/31337/recommendations")
    assert unknown.status_code == 503 and "retry-after" in unknown.headers, "fold-in cannot be ruled out"
    fallback = await api.get("/users/31337/recommendations", params={"fallback": "popular"})
    assert fallback.status_code == 200 and fallback.json()["source"] == "popular"
    pairs = {"pairs": [{"user_id": known, "movie_id": movie}]}
    assert (await api.post("/predict", json=pairs)).status_code == 200
    started = time.monotonic()
    ready = await api.get("/readyz")
    assert time.monotonic() - started < 0.5, "readiness never waits on the database"
    assert ready.status_code == 200 and ready.json()["database"] == "unavailable"
    assert "feedback_database_up 0.0" in (await api.get("/metrics")).text


async def check_recovered(api, bundle) -> None:
    async def database_ok() -> bool:
        return (await api.get("/readyz")).json()["database"] == "ok"

    await wait_for(database_ok)
    movie = bundle.encoders.movies[1]
    assert (await api.put(f"/users/31337/ratings/{movie}", json={"rating": 5})).status_code == 200
    listed = (await api.get("/users/31337/ratings")).json()["ratings"]
    assert [(r["movie_id"], r["rating"]) for r in listed] == [(movie, 5), (bundle.encoders.movies[0], 4)]
    folded = (await api.get("/users/31337/recommendations")).json()
    assert folded["source"] == "fold-in"
    assert not {movie, bundle.encoders.movies[0]} & {r["movie_id"] for r in folded["recommendations"]}


OUTAGES = {  # how PostgreSQL goes away, and how it comes back
    "stopped": (lambda cluster: cluster.stop(), lambda cluster: cluster.start()),
    # SIGSTOP: connections stay open, nothing answers; only the timeout frees a request.
    "hung": (lambda cluster: cluster.pause(), lambda cluster: cluster.resume()),
}


@pytest.mark.anyio
@pytest.mark.parametrize("outage", OUTAGES)
async def test_postgresql_going_away_degrades_writes_only_and_is_recovered_from_by_itself(
    outage, postgres, postgres_api, served_tiny_bundle
):
    api, bundle = postgres_api, served_tiny_bundle
    stored = await api.put(f"/users/31337/ratings/{bundle.encoders.movies[0]}", json={"rating": 4})
    assert stored.status_code == 200
    go_away, come_back = OUTAGES[outage]
    go_away(postgres)
    try:
        await check_degraded_service(api, bundle)
    finally:
        come_back(postgres)
    await check_recovered(api, bundle)
