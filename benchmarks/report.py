"""What the load benchmark's figures say: its tables, the real server's ratios to the references,
the agreement of their answers and the team's targets. Nothing here measures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.wrk import WrkRun

if TYPE_CHECKING:
    from benchmarks.load import ServerResult

# The team's targets (benchmarks/README.md); measured, never tuned for.
FLOOR_SHARE, P99_MS, READY_S, RSS_MB = 0.8, 50.0, 10.0, 1024.0
TOLERANCE = 1e-3  # stars: answers within it agree
SERVERS = ("real", "floor", "naive")


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


def runs_table(results: dict[str, ServerResult]) -> list[str]:
    """A line per measured run, under the name of its server (or of its settings, in a sweep)."""
    width = max(map(len, ["server", *results])) + 2
    header = "endpoint           conns     req/s   p50 ms   p95 ms   p99 ms  non2xx  conn  read write  tmout"
    lines = [f"{'server':<{width}}{header}   cpu%  batch other%"]
    lines += [f"{name:<{width}}{run_line(m)}" for name, result in results.items() for m in result.runs]
    return lines


def run_line(w: WrkRun) -> str:
    """One run's figures, in the columns of `runs_table` (also printed as each run ends)."""
    p50, p95 = (f"{w.p50_ms:.1f}", f"{w.p95_ms:.1f}") if w.requests else ("-", "-")
    figures = f"{w.endpoint:<17}{w.connections:>6}{w.requests_per_s:>10.1f}{p50:>9}{p95:>9}{w.p99_text:>9}"
    errors = f"{w.non_2xx:>8}{w.connect_errors:>6}{w.read_errors:>6}{w.write_errors:>6}{w.timeouts:>7}"
    cpu = f"{w.server_cpu_percent:>7.0f}{w.mean_batch_size or '-':>7}{w.other_cpu_percent:>7.0f}"
    return figures + errors + cpu


def servers_table(results: dict[str, ServerResult]) -> list[str]:
    """Ready time, memory, restarts and the machine's speed (`load.cpu_speed`) per server."""
    width = max(map(len, ["server", *results])) + 2
    lines = [f"{'server':<{width}}  ready s  peak RSS MB   RSS MB  restarts   cpu speed"]
    for name, s in results.items():
        speed = f"{min(s.cpu_speed)}-{max(s.cpu_speed)}"
        figures = f"{s.ready_seconds:>9.2f}{s.peak_rss_mb:>13.0f}{s.rss_mb:>9.0f}{s.restarts:>10}{speed:>12}"
        lines.append(f"{name:<{width}}{figures}")
    speeds = [speed for result in results.values() for speed in result.cpu_speed]
    low, high = min(speeds), max(speeds)
    if high > 1.1 * low:  # ratios between servers measured at different speeds are skewed by as much
        lines.append(f"WARNING: the machine's speed (see load.cpu_speed) drifted from {low} to {high}")
    return lines


def comparison(servers: dict[str, ServerResult], bundle: dict[str, Any], duration: float) -> str:
    lines = [
        f"Load: wrk -t2 -c N -d {duration:g}s --timeout 5s on loopback (naive: 10 s at most); bundle "
        f"{bundle['version']} ({bundle['data']['users']} users, {bundle['data']['movies']} movies)",
        *(f"{name}: {note}" for name, server in servers.items() for note in server.notes),
        "",
        *runs_table(servers),
    ]
    if len(servers) > 1 and "real" in servers:
        lines.append("\nReal server against the references (throughput ratios):")
        lines.append("endpoint          conns real/floor real/naive  real/floor, rounds")
    for r in ratios(servers) if len(servers) > 1 else ():
        floor, naive = ("-" if v is None else f"{v:.2f}" for v in (r.vs_floor, r.vs_naive))
        rounds = "/".join(f"{x:.2f}" for x in r.vs_floor_rounds) if len(r.vs_floor_rounds) > 1 else ""
        lines.append(f"{r.endpoint:<17}{r.connections:>6}{floor:>11}{naive:>11}  {rounds}")
    lines += ["", *servers_table(servers), ""]
    agreements = summary(servers)["agreement_with_real"]
    lines += [f"{name} vs real {found['detail']}" for name, found in agreements.items()]
    if "real" in servers:
        lines.append("\nTargets (real server):")
        for t in targets(servers["real"], servers.get("floor")):
            lines.append(f"{'met' if t.met else 'MISSED':<7}{t.name:<52}{t.measured}")
    return "\n".join(lines) + "\n"
