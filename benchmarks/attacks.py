"""Resource and edge probes of a real server, as an attacker or an unlucky operator would try them.

    python -m benchmarks.attacks --model-dir DIR [scenario ...] [--root CHECKOUT]

Each scenario (idle, slow, header, bodies, abandon, honest, sigterm: what each does and its bound
are in the README's Reliability section) starts its own `python -m app` (`--root` serves another
checkout's, for before/after figures), attacks it over raw sockets from this process's event loop
(/healthz is probed from a thread, so this busy loop does not delay it), and prints what it
measured and PASS or FAIL. Its helpers (`request`, `send`, `answer`, `probe`, ...) serve
`tests/app/test_connections.py` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import re
import resource
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks import REPO, parser
from benchmarks.servers import HOST, Server
from benchmarks.wrk import known_ids, predict_body

BOUND_S = 1.0  # /healthz, and recommendations' p99, under attack
RSS_BOUND_MB = 1500


def request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    """One HTTP/1.1 request, as bytes."""
    length = f"content-length: {len(body)}\r\ncontent-type: application/json\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nhost: {HOST}\r\n{length}{headers}\r\n".encode() + body


async def send(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def answer(reader: asyncio.StreamReader, timeout: float = 30) -> tuple[int | None, bytes]:
    """The status and body of the next response; (None, b"") if the server closed or reset first."""
    try:
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
            body = await reader.readexactly(int(length.group(1))) if length else b""
            return int(head.split(b" ", 2)[1]), body
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return None, b""


async def exchange(port: int, data: bytes, timeout: float = 60) -> int | None:
    """The status of one request on a connection of its own; None if refused, closed or reset."""
    try:
        reader, writer = await send(port, data)
    except OSError:
        return None
    status, _ = await answer(reader, timeout)
    writer.transport.abort()
    return status


async def closed_after(reader: asyncio.StreamReader, timeout: float) -> float | None:
    """Seconds until the server closes the connection (reading and dropping any answer), or None."""
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        try:
            async with asyncio.timeout(timeout):
                while await reader.read(65536):
                    pass
        except TimeoutError:
            return None
    return time.monotonic() - started


def probe(port: int, path: str = "/healthz", timeout: float = 10) -> float:
    """Seconds for GET `path` on a new connection (`timeout` if it failed); blocking."""
    started = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(request("GET", path, headers="connection: close\r\n"))
            ok = sock.makefile("rb").readline().split(b" ")[1:2] == [b"200"]
    except OSError:
        ok = False
    return time.monotonic() - started if ok else timeout


async def probes(port: int, seconds: float, every: float = 0.25) -> list[float]:
    """/healthz probed every `every` seconds for `seconds`, from a thread."""

    def run() -> list[float]:
        found: list[float] = []
        while len(found) < seconds / every:
            found.append(probe(port))
            time.sleep(every)
        return found

    return await asyncio.to_thread(run)


def pairs_body(model_dir: Path, n: int) -> bytes:
    """A `/predict` body of `n` random known pairs."""
    return predict_body(*known_ids(model_dir), n, np.random.default_rng(0)).encode()


def verdict(ok: bool, text: str) -> bool:
    print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return ok


def spread(seconds: list[float]) -> str:
    return f"max {max(seconds):.3f} s, median {np.median(seconds):.3f} s"


# --- scenarios: each takes the server and the model folder, prints, returns pass or fail --------


async def hold(server: Server, model_dir: Path, slow: bool, n: int = 10_000, seconds: float = 30) -> bool:
    """`n` attackers, each holding a socket (idle, or sending a header a byte a second) and
    opening another a second after the server closes it, for `seconds`."""
    until, opened, open_now = time.monotonic() + seconds, [0], [0]

    async def attacker() -> None:
        while time.monotonic() < until:
            try:
                reader, writer = await asyncio.open_connection(HOST, server.port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            opened[0], open_now[0] = opened[0] + 1, open_now[0] + 1
            writer.write(b"GET /healthz HTTP/1.1\r\n" if slow else b"")
            with contextlib.suppress(OSError):
                while time.monotonic() < until:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1):
                            if not await reader.read(1024):
                                break  # closed by the server
                    writer.write(b"x" if slow else b"")
            open_now[0] -= 1
            writer.transport.abort()
            await asyncio.sleep(1)

    async def census() -> list[int]:
        counts = []
        while time.monotonic() < until:
            await asyncio.sleep(5)
            counts.append(open_now[0])
        return counts

    seen, counts, *_ = await asyncio.gather(
        probes(server.port, seconds), census(), *(attacker() for _ in range(n))
    )
    print(f"  {n} attackers, {seconds:.0f} s: {opened[0]} sockets opened; open, every 5 s: {counts}")
    print(f"  /healthz every 0.25 s: {spread(seen)}")
    return verdict(max(seen) < BOUND_S, f"/healthz within {BOUND_S} s with {n} sockets held")


async def header(server: Server, model_dir: Path) -> bool:
    async def endless() -> int:
        _, writer = await send(server.port, b"GET /healthz HTTP/1.1\r\nx-long: ")
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < 96 << 20:
                writer.write(b"a" * (1 << 20))
                await writer.drain()
                sent += 1 << 20
        writer.transport.abort()
        return sent

    sent, seen = await asyncio.gather(endless(), probes(server.port, 5))
    status = await exchange(server.port, request("GET", "/", headers=f"x-big: {'a' * (10 << 20)}\r\n"), 30)
    print(f"  a header that never ends: {sent >> 20} MB sent; /healthz meanwhile: {spread(seen)}")
    print(f"  a whole 10 MB header: status {status}; RSS (peak, now) {server.memory_mb()} MB")
    return verdict(max(seen) < BOUND_S and status == 431, "/healthz within 1 s, and 431 for 10 MB")


async def bodies(server: Server, model_dir: Path, n: int = 1000) -> bool:
    start, body = server.memory_mb()[1], request("POST", "/predict", pairs_body(model_dir, 58_000))
    # 58,000 pairs: just under MAX_BODY_BYTES
    statuses = Counter(await asyncio.gather(*(exchange(server.port, body) for _ in range(n))))
    peak = server.memory_mb()[0]
    await asyncio.sleep(10)
    after = server.memory_mb()[1]
    print(f"  {n} bodies of 1.99 MB: {dict(statuses)}")
    print(f"  RSS {start:.0f} MB before, peak {peak:.0f}, 10 s after {after:.0f}")
    return verdict(peak < RSS_BOUND_MB and after < start + 150, "RSS under 1.5 GB, back near its start")


def run_paced(port: int, users: list[int], seconds: float) -> list[float]:
    return asyncio.run(paced(port, users, seconds))


async def paced(port: int, users: list[int], seconds: float, rate: float = 50) -> list[float]:
    """Recommendations at a steady `rate`, a new connection each, each sent on time however late
    the others (no coordinated omission): their seconds, 30 for a failure."""
    started, rng = time.monotonic(), np.random.default_rng(1)

    async def one(at: float) -> float:
        await asyncio.sleep(at - time.monotonic())
        status = await exchange(port, request("GET", f"/users/{rng.choice(users)}/recommendations"), 30)
        return time.monotonic() - at if status == 200 else 30.0

    return await asyncio.gather(*(one(started + i / rate) for i in range(int(seconds * rate))))


async def abandon(server: Server, model_dir: Path, n: int = 200, seconds: float = 20) -> bool:
    body, users = request("POST", "/predict", pairs_body(model_dir, 10_000)), known_ids(model_dir)[0]
    before = server.metric('model_batch_size_sum{kind="predict"}')

    async def hang_up() -> None:  # n requests sent at once, their clients gone 0.3 s later
        clients = await asyncio.gather(*(asyncio.open_connection(HOST, server.port) for _ in range(n)))
        for _, writer in clients:
            writer.write(body)
        await asyncio.sleep(0.3)
        for _, writer in clients:
            writer.transport.abort()

    # The recommendations are sent from a process of their own: this one is busy writing the
    # attackers' 70 MB and would delay them itself (measured: p99 2 s from here, 15 ms from outside;
    # 1.2 s from a thread, which still shares this process's interpreter lock).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as own:
        measured = asyncio.get_running_loop().run_in_executor(own, run_paced, server.port, users, seconds)
        recommended, _ = await asyncio.gather(measured, hang_up())
    computed = server.metric('model_batch_size_sum{kind="predict"}') - before
    p99 = float(np.percentile(recommended, 99))
    print(f"  {n} abandoned /predict of 10,000 pairs: {computed:.0f} computed")
    print(f"  recommendations, 50/s for {seconds:.0f} s: p99 {p99:.3f} s, {spread(recommended)}")
    return verdict(p99 < BOUND_S and computed < n / 2, "recommendations p99 under 1 s, abandoned dropped")


async def honest(server: Server, model_dir: Path, clients: int = 32, seconds: float = 10) -> bool:
    body, latencies, statuses = request("POST", "/predict", pairs_body(model_dir, 10_000)), [], Counter()

    async def client(until: float) -> None:
        while time.monotonic() < until:
            started = time.monotonic()
            statuses[await exchange(server.port, body)] += 1
            latencies.append(time.monotonic() - started)

    until = time.monotonic() + seconds
    seen, *_ = await asyncio.gather(probes(server.port, seconds), *(client(until) for _ in range(clients)))
    print(f"  {clients} clients x 10,000 pairs, {seconds:.0f} s: {dict(statuses)}")
    print(f"  /predict p99 {np.percentile(latencies, 99):.2f} s; /healthz {spread(seen)}")
    return verdict(max(seen) < BOUND_S, "/healthz within 1 s")


async def sigterm(server: Server, model_dir: Path, n: int = 64) -> bool:
    body = request("POST", "/predict", pairs_body(model_dir, 10_000))
    sent = [await send(server.port, body) for _ in range(n)]
    reader, writer = await send(server.port, b"GET /readyz HTTP/1.1\r\nhost: x\r\n")  # its head not done
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.05)
    writer.write(b"\r\n")
    ready, _ = await answer(reader)
    counts = Counter([(await answer(r, 60))[0] for r, _ in sent])
    status = await asyncio.to_thread(server.wait, 60)
    took = time.monotonic() - started
    print(f"  {n} requests sent before SIGTERM: {dict(counts)} (None: reset or closed); /readyz: {ready}")
    print(f"  exit status {status} after {took:.1f} s")
    answered = None not in counts  # 200, or 503 from admission control: an answer either way
    return verdict(answered and ready == 503 and status == 0 and took < 10, "all answered, 503, exit 0")


SCENARIOS: dict[str, Callable] = {
    "idle": lambda server, model_dir: hold(server, model_dir, slow=False),
    "slow": lambda server, model_dir: hold(server, model_dir, slow=True),
    "header": header,
    "bodies": bodies,
    "abandon": abandon,
    "honest": honest,
    "sigterm": sigterm,
}


def main(argv: list[str] | None = None) -> int:
    arguments = parser("attacks", __doc__)
    arguments.add_argument(
        "--model-dir", type=Path, required=True, help="a model folder with a current bundle"
    )
    arguments.add_argument("--root", type=Path, default=REPO, help="the checkout to serve (before/after)")
    arguments.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    args = arguments.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        arguments.error(f"unknown scenario {', '.join(sorted(unknown))}; there are {', '.join(SCENARIOS)}")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 10,000 sockets and more
    results = {}
    for name in args.scenarios or SCENARIOS:
        print(f"{name}:", flush=True)
        settings = {"RELOAD_INTERVAL_S": "0", "LOG_LEVEL": "warning"}
        with Server(args.model_dir, settings, root=args.root) as server:
            results[name] = asyncio.run(SCENARIOS[name](server, args.model_dir))
    print("summary:", " ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
