"""Tables, ratios, the team's targets and the plot, from the results the load run collected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.wrk import ENDPOINTS, error_count

SERVERS = ("real", "floor", "naive")

# The team's targets (see benchmarks/README.md); measured, never tuned for.
TARGET_FLOOR_SHARE = 0.8
TARGET_P99_MS = 50.0
TARGET_READY_S = 10.0
TARGET_RSS_MB = 1024.0


def p99_text(run: dict) -> str:
    """p99 in ms, or '>timeout' when over 1% of requests timed out (wrk drops those from latency)."""
    timeouts = run["socket_errors"]["timeout"]
    if run["requests"] == 0 or timeouts > 0.01 * run["requests"]:
        return f">{run['timeout_s'] * 1000:.0f}"
    return f"{run['latency_ms']['p99']:.1f}"


def runs_table(servers: dict[str, dict]) -> str:
    header = (
        f"{'server':<8}{'endpoint':<17}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'non2xx':>8}{'conn':>6}{'read':>6}{'write':>6}{'tmout':>7}{'cpu%':>7}{'secs':>6}{'batch':>7}{'other%':>7}"
    )
    lines = [header, "-" * len(header)]
    for name, server in servers.items():
        for run in server["runs"]:
            errors = run["socket_errors"]
            p50, p95 = (
                (f"{run['latency_ms']['p50']:.1f}", f"{run['latency_ms']['p95']:.1f}")
                if run["requests"]
                else ("-", "-")  # nothing completed within the run
            )
            lines.append(
                f"{name:<8}{run['endpoint']:<17}{run['connections']:>6}{run['requests_per_s']:>10.1f}"
                f"{p50:>9}{p95:>9}{p99_text(run):>9}"
                f"{run['non_2xx']:>8}{errors['connect']:>6}{errors['read']:>6}{errors['write']:>6}"
                f"{errors['timeout']:>7}{run.get('server_cpu_percent', 0):>7.0f}{run['duration_s']:>6.0f}"
                f"{run.get('mean_batch_size') or '-':>7}{run.get('other_processes_cpu_percent', 0):>7.0f}"
            )
    return "\n".join(lines)


def find_run(servers: dict[str, dict], server: str, endpoint: str, connections: int) -> dict | None:
    for run in servers.get(server, {}).get("runs", []):
        if run["endpoint"] == endpoint and run["connections"] == connections:
            return run
    return None


def ratios(servers: dict[str, dict]) -> list[dict[str, Any]]:
    """Real server against each reference, per endpoint and concurrency: throughput and p99."""
    rows = []
    for endpoint in ENDPOINTS:
        levels = sorted(
            {r["connections"] for s in servers.values() for r in s["runs"] if r["endpoint"] == endpoint}
        )
        for connections in levels:
            real = find_run(servers, "real", endpoint, connections)
            if real is None:
                continue
            row: dict[str, Any] = {"endpoint": endpoint, "connections": connections}
            for reference in ("floor", "naive"):
                other = find_run(servers, reference, endpoint, connections)
                if other is None:
                    continue
                rps = other["requests_per_s"]
                if p99_text(other).startswith(">"):
                    # Over 1% timeouts: its requests/s counts late answers only; no meaningful ratio.
                    row[f"{reference}_overloaded"] = True
                    rps = 0.0
                row[f"throughput_vs_{reference}"] = round(real["requests_per_s"] / rps, 3) if rps else None
                rounds = list(
                    zip(
                        real.get("requests_per_s_rounds", []),
                        other.get("requests_per_s_rounds", []),
                        strict=False,
                    )
                )
                if rounds and rps:
                    row[f"throughput_vs_{reference}_rounds"] = [round(a / b, 3) for a, b in rounds if b]
                other_p99 = 0.0 if row.get(f"{reference}_overloaded") else other["latency_ms"]["p99"]
                row[f"p99_vs_{reference}"] = (
                    round(real["latency_ms"]["p99"] / other_p99, 3) if other_p99 else None
                )
            rows.append(row)
    return rows


def ratios_table(servers: dict[str, dict], rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'endpoint':<17}{'conns':>6}{'real req/s':>11}{'floor':>9}{'naive':>8}"
        f"{'real/floor':>11}{'real/naive':>11}{'p99 real':>10}{'floor':>8}{'naive':>8}"
    )
    lines = [header, "-" * len(header)]

    def cell(value: float | None, digits: int = 2, suffix: str = "") -> str:
        return "-" if value is None else f"{value:.{digits}f}{suffix}"

    for row in rows:
        endpoint, connections = row["endpoint"], row["connections"]
        runs = {name: find_run(servers, name, endpoint, connections) for name in SERVERS}
        rps = {name: (run["requests_per_s"] if run else None) for name, run in runs.items()}
        p99 = {name: (p99_text(run) if run else "-") for name, run in runs.items()}
        lines.append(
            f"{endpoint:<17}{connections:>6}{cell(rps['real'], 1):>11}{cell(rps['floor'], 1):>9}"
            f"{cell(rps['naive'], 1):>8}{cell(row.get('throughput_vs_floor')):>11}"
            f"{cell(row.get('throughput_vs_naive'), 1, 'x'):>11}"
            f"{p99['real']:>10}{p99['floor']:>8}{p99['naive']:>8}"
        )
    return "\n".join(lines)


def targets(servers: dict[str, dict]) -> list[dict[str, Any]]:
    """The team's targets, each with the measured value and whether it is met (None: not measured)."""
    checks: list[dict[str, Any]] = []

    def add(name: str, value: Any, ok: bool | None) -> None:
        checks.append({"target": name, "measured": value, "met": ok})

    real = servers.get("real")
    if real is None:
        return checks
    at32 = find_run(servers, "real", "recommendations", 32)
    floor32 = find_run(servers, "floor", "recommendations", 32)
    if at32 is not None:
        if floor32 is not None and floor32["requests_per_s"]:
            share = at32["requests_per_s"] / floor32["requests_per_s"]
            rounds = [
                a / b
                for a, b in zip(
                    at32.get("requests_per_s_rounds", []),
                    floor32.get("requests_per_s_rounds", []),
                    strict=False,
                )
                if b
            ]
            spread = f" (round by round {min(rounds):.2f} to {max(rounds):.2f})" if len(rounds) > 1 else ""
            add(
                f"recommendations @32: throughput >= {TARGET_FLOOR_SHARE} x floor",
                f"{share:.2f} x{spread}",
                share >= TARGET_FLOOR_SHARE,
            )
        add(
            f"recommendations @32: p99 <= {TARGET_P99_MS:.0f} ms",
            f"{p99_text(at32)} ms",
            at32["latency_ms"]["p99"] <= TARGET_P99_MS and at32["socket_errors"]["timeout"] == 0,
        )
        add("recommendations @32: no errors", error_count(at32), error_count(at32) == 0)
    at128 = find_run(servers, "real", "recommendations", 128)
    if at128 is not None:
        add("recommendations @128: no errors, no timeouts", error_count(at128), error_count(at128) == 0)
    predict32 = find_run(servers, "real", "predict", 32)
    if predict32 is not None:
        add(
            f"predict (100 pairs) @32: p99 <= {TARGET_P99_MS:.0f} ms",
            f"{p99_text(predict32)} ms",
            predict32["latency_ms"]["p99"] <= TARGET_P99_MS and predict32["socket_errors"]["timeout"] == 0,
        )
    ready = real.get("ready_seconds")
    if ready is not None:
        add(
            f"ready within {TARGET_READY_S:.0f} s of process start", f"{ready:.2f} s", ready <= TARGET_READY_S
        )
    peak = real.get("memory", {}).get("peak_rss_mb")
    if peak is not None:
        add("peak RSS < 1 GB", f"{peak:.0f} MB", peak < TARGET_RSS_MB)
    return checks


def targets_table(checks: list[dict[str, Any]]) -> str:
    verdict = {True: "met", False: "MISSED", None: "-"}
    return "\n".join(f"{verdict[c['met']]:<7}{c['target']:<52}{c['measured']}" for c in checks)


def plot(servers: dict[str, dict], path: Path, title: str) -> None:
    """Throughput and p99 against connections, one line per server, one row per endpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    endpoints = [e for e in ENDPOINTS if any(r["endpoint"] == e for s in servers.values() for r in s["runs"])]
    figure, axes = plt.subplots(len(endpoints), 2, figsize=(11, 4 * len(endpoints)), squeeze=False)
    styles = {"real": ("tab:blue", "o"), "floor": ("tab:green", "s"), "naive": ("tab:red", "^")}
    for row, endpoint in enumerate(endpoints):
        throughput, latency = axes[row]
        for name, server in servers.items():
            runs = sorted(
                (r for r in server["runs"] if r["endpoint"] == endpoint), key=lambda r: r["connections"]
            )
            if not runs:
                continue
            color, marker = styles.get(name, ("tab:gray", "x"))
            runs = [r for r in runs if r["requests"]]  # a log axis cannot show a run with no answer
            x = [r["connections"] for r in runs]
            throughput.plot(x, [r["requests_per_s"] for r in runs], marker=marker, color=color, label=name)
            # A run with many timeouts has no meaningful p99: draw it at the timeout, hollow.
            p99 = [
                r["timeout_s"] * 1000 if p99_text(r).startswith(">") else r["latency_ms"]["p99"] for r in runs
            ]
            latency.plot(x, p99, marker=marker, color=color, label=name)
            for xi, yi, r in zip(x, p99, runs, strict=True):
                if p99_text(r).startswith(">"):
                    latency.plot([xi], [yi], marker="o", markersize=12, mfc="none", color=color)
        throughput.set_title(f"{endpoint}: throughput")
        throughput.set_ylabel("requests/s (log)")
        latency.set_title(f"{endpoint}: p99 latency (ring: over 1% timeouts)")
        latency.set_ylabel("ms (log)")
        latency.axhline(TARGET_P99_MS, color="gray", linestyle="--", linewidth=1, label="50 ms target")
        levels = sorted({r["connections"] for s in servers.values() for r in s["runs"]})
        for axis in (throughput, latency):
            axis.set_xscale("log", base=2)
            axis.set_xticks(levels, [str(level) for level in levels])
            axis.set_yscale("log")
            axis.set_xlabel("connections")
            axis.grid(True, which="both", alpha=0.3)
            axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
