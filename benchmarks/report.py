"""What the load benchmark's figures say: its tables, the real server's ratios to the references,
the agreement of their answers and the team's targets. Nothing here measures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from benchmarks.wrk import WrkRun

if TYPE_CHECKING:
    from benchmarks.load import ServerResult

# The team's targets (benchmarks/README.md); measured, never tuned for.
FLOOR_SHARE, P99_MS, READY_S, RSS_MB = 0.8, 50.0, 10.0, 1024.0
TOLERANCE = 1e-3  # stars: answers within it agree
SERVERS = ("real", "floor", "naive")
# WrkRun's fields as the runs table heads them
RUN_COLUMNS = dict(endpoint="endpoint", connections="conns", requests_per_s="req/s", p50_ms="p50 ms")
RUN_COLUMNS |= dict(
    p95_ms="p95 ms", p99_ms="p99 ms", non_2xx="non2xx", connect_errors="conn", read_errors="read"
)
RUN_COLUMNS |= dict(
    write_errors="write", timeouts="tmout", server_cpu_percent="cpu%", mean_batch_size="batch"
)
RUN_COLUMNS |= dict(other_cpu_percent="other%")


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    met: bool


@dataclass(frozen=True)
class Ratio:
    """The real server's throughput over a reference's (None where it is missing or timed out)."""

    endpoint: str
    connections: int
    vs_floor: float | None
    vs_naive: float | None
    vs_floor_rounds: tuple[float, ...]


def agreement(real: ServerResult, other: ServerResult) -> tuple[bool, str]:
    """Does `other` give the real server's top 10 (the same movies in the same order) and stars?"""
    identical, ties, mismatched, worst = 0, 0, [], 0.0
    for user, expected in real.top10.items():
        got = other.top10.get(user, [])
        close = [abs(a[1] - b[1]) <= TOLERANCE for a, b in zip(got, expected, strict=False)]
        if [movie for movie, _ in got] == [movie for movie, _ in expected]:
            identical += 1
        elif len(got) == len(expected) and all(close):
            ties += 1  # the same stars, near-tied movies in another order
        else:
            mismatched.append(user)
        worst = max([worst, *(abs(a[1] - b[1]) for a, b in zip(got, expected, strict=False) if a[0] == b[0])])
    pairs = list(zip(other.predict, real.predict, strict=True))
    predict = max((abs(a - b) for a, b in pairs if a is not None and b is not None), default=0.0)
    unknowns = all((a is None) == (b is None) for a, b in pairs)
    agrees = not mismatched and max(worst, predict) <= TOLERANCE and unknowns
    return agrees, (
        f"on {len(real.top10)} users: top-10 identical {identical}, equal up to ties {ties}, mismatched "
        f"{mismatched or 'none'}; max rating difference {worst:.6f}; /predict max difference {predict:.6f}"
        f"{'' if unknowns else ', unknown pairs differ'} -> {'AGREES' if agrees else 'DISAGREES'}"
    )


def ratios(servers: dict[str, ServerResult]) -> list[Ratio]:
    found = []
    for m in servers["real"].runs if "real" in servers else []:
        key = (m.endpoint, m.connections)
        other = {name: servers[name].find(*key) if name in servers else None for name in ("floor", "naive")}
        rps = {n: o.requests_per_s for n, o in other.items() if o and not o.overloaded}
        vs = [round(m.requests_per_s / rps[n], 3) if rps.get(n) else None for n in ("floor", "naive")]
        floor_rounds = other["floor"].rps_rounds if other["floor"] else ()
        rounds = tuple(round(a / b, 3) for a, b in zip(m.rps_rounds, floor_rounds, strict=False) if b)
        found.append(Ratio(*key, *vs, rounds))
    return found


def targets(real: ServerResult, floor: ServerResult | None) -> list[Target]:
    """The team's targets that the real server's figures speak to, each met or missed."""
    at32, at128 = real.find("recommendations", 32), real.find("recommendations", 128)
    predict32, found = real.find("predict", 32), []
    for r in ratios({"real": real, "floor": floor} if floor else {"real": real}):
        if (r.endpoint, r.connections) == ("recommendations", 32) and r.vs_floor is not None:
            rounds = r.vs_floor_rounds
            spread = f" (round by round {min(rounds):.2f} to {max(rounds):.2f})" if len(rounds) > 1 else ""
            name = f"recommendations @32: throughput >= {FLOOR_SHARE} x floor"
            found.append(Target(name, f"{r.vs_floor:.2f} x{spread}", r.vs_floor >= FLOOR_SHARE))
    for run, what in ((at32, "recommendations"), (predict32, "predict (100 pairs)")):
        if run:
            met = run.p99_ms <= P99_MS and not run.timeouts
            found.append(Target(f"{what} @32: p99 <= {P99_MS:.0f} ms", f"{run.p99_text} ms", met))
    for run, what in ((at32, "@32: no errors"), (at128, "@128: no errors, no timeouts")):
        if run:
            found.append(Target(f"recommendations {what}", str(run.errors), run.errors == 0))
    ready, peak = real.ready_seconds, real.peak_rss_mb
    found.append(Target(f"ready within {READY_S:.0f} s of process start", f"{ready:.2f} s", ready <= READY_S))
    found.append(Target("peak RSS < 1 GB", f"{peak:.0f} MB", peak < RSS_MB))
    return found


def summary(servers: dict[str, ServerResult]) -> dict[str, Any]:
    """The comparison's conclusions, for the JSON document."""
    real, agreements = servers.get("real"), {}
    for name, other in servers.items() if real and real.top10 else ():
        if name != "real" and other.top10:
            agrees, detail = agreement(real, other)
            agreements[name] = {"agrees": agrees, "detail": detail}
    met = [asdict(t) for t in targets(real, servers.get("floor"))] if real else []
    return {"agreement_with_real": agreements, "ratios": [asdict(r) for r in ratios(servers)], "targets": met}


def runs_table(results: dict[str, ServerResult]) -> str:
    """A row per measured run, under the name of its server (or of its settings, in a sweep)."""
    rows = [{"server": n, **asdict(w), "p99_ms": w.p99_text} for n, r in results.items() for w in r.runs]
    table = pd.DataFrame(rows, columns=["server", *RUN_COLUMNS]).rename(columns=RUN_COLUMNS)
    return table.to_string(index=False)


def run_line(w: WrkRun) -> str:
    """One run's main figures, logged as it ends."""
    cpu = f"cpu {w.server_cpu_percent:.0f}%, batch {w.mean_batch_size}, other {w.other_cpu_percent:.0f}%"
    figures = f"{w.requests_per_s:.1f} req/s, p99 {w.p99_text} ms, {w.errors} errors"
    return f"{w.endpoint} c={w.connections}: {figures}, {cpu}"


def servers_table(results: dict[str, ServerResult]) -> str:
    """Ready time, memory, restarts and the machine's speed (`load.cpu_speed`) per server; a warning
    when that speed drifted, which skews ratios between servers by as much."""
    table = pd.DataFrame([asdict(s) for s in results.values()], index=list(results))
    table = table[["ready_seconds", "peak_rss_mb", "rss_mb", "restarts", "cpu_speed"]]
    speeds = [speed for result in results.values() for speed in result.cpu_speed]
    low, high = min(speeds), max(speeds)
    drift = f"\nWARNING: the machine's speed drifted from {low} to {high}" if high > 1.1 * low else ""
    return table.to_string() + drift


def comparison(servers: dict[str, ServerResult], bundle: dict[str, Any], duration: float) -> str:
    """The load benchmark's report: notes, runs, ratios, servers, agreement, targets."""
    lines = [
        f"Load: wrk -t2 -c N -d {duration:g}s --timeout 5s on loopback (naive: 10 s at most); bundle "
        f"{bundle['version']} ({bundle['data']['users']} users, {bundle['data']['movies']} movies)",
        *(f"{name}: {note}" for name, server in servers.items() for note in server.notes),
        f"\n{runs_table(servers)}\n\n{servers_table(servers)}\n",
    ]
    if len(servers) > 1 and "real" in servers:
        table = pd.DataFrame([asdict(r) for r in ratios(servers)]).to_string(index=False)
        lines.append(f"Real server against the references (throughput ratios):\n{table}\n")
    agreements = summary(servers)["agreement_with_real"]
    lines += [f"{name} vs real {found['detail']}" for name, found in agreements.items()]
    if "real" in servers:
        lines.append("\nTargets (real server):")
        for t in targets(servers["real"], servers.get("floor")):
            lines.append(f"{'met' if t.met else 'MISSED':<7}{t.name:<52}{t.measured}")
    return "\n".join(lines) + "\n"
