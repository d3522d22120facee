"""The load benchmark: the real server beside a naive and a floor reference, under the same load.

    python -m benchmarks.load --data-dir DIR --model-dir DIR [--duration 10]

Trains a bundle if `MODEL_DIR/current` is missing, then, one server at a time on loopback (so they
never compete for the cores): starts it, times process start to the first 200 from /readyz,
checks its answers against the others', and drives it with wrk from a separate process at each
concurrency (default 8, 32, 128): `GET /users/{id}/recommendations?k=10` for random known users and
`POST /predict` with 100 random known pairs. Prints requests/s, p50/p95/p99, non-2xx responses and
socket errors per run, the real server's ratios to both references, its peak RSS and the team's
targets, and saves JSON and a PNG plot in benchmarks/results/.

Other modes: `--sweep` measures the real server under a range of settings (one setting varied at
a time, plus `--combo` sets); `--training` adds training speed (default beside `--preset seed`);
`--profile` samples the real server with py-spy under load at 32 connections.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import profiling, report, training_speed
from benchmarks.servers import REPO, Server, ServerSpec, machine_cpu_seconds
from benchmarks.wrk import ENDPOINTS, INSTALL_HINT, LoadFiles, error_count, run_wrk, wrk_path, wrk_version

RESULTS = Path(__file__).with_name("results")
DEFAULT_SWEEP = "BATCH_WINDOW_MS=0,1,2,5;BATCH_MAX_USERS=16,32,64,128;COMPUTE_THREADS=1,2"
SETTLE_TIMEOUT_S = 15.0
PROFILE_RATE_HZ = 100
OTHERS_WARNING_PERCENT = 15.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_list(text: str, kind: type = int) -> list:
    return [kind(part) for part in text.split(",") if part.strip()]


def parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env takes KEY=VALUE, got {pair!r}")
        env[key.strip().upper()] = value.strip()
    return env


def ensure_bundle(model_dir: Path, data_dir: Path | None) -> dict[str, Any] | None:
    """Trains one with the default configuration if `model_dir/current` is missing."""
    if (model_dir / "current").exists():
        return None
    log(f"no bundle at {model_dir / 'current'}: training one (default configuration) ...")
    wall = training_speed.train(data_dir, model_dir, [])
    log(f"trained in {wall:.1f} s")
    return {"trained_because_missing": True, "wall_seconds": round(wall, 2)}


class Runner:
    """Measures one server at a time against the same load files and settings."""

    def __init__(self, args: argparse.Namespace, files: LoadFiles, log_dir: Path, probe_user: int) -> None:
        self.args = args
        self.files = files
        self.log_dir = log_dir
        self.probe = f"/users/{probe_user}/recommendations?k=10"

    def start(self, spec: ServerSpec) -> Server:
        log(f"[{spec.name}] starting {' '.join(spec.command(0)[1:4])} ...")
        server = Server(spec, self.log_dir)
        log(f"[{spec.name}] ready in {server.ready_seconds:.2f} s (pid {server.pid}, port {server.port})")
        return server

    def wrk(self, server: Server, endpoint: str, connections: int, duration: float) -> dict[str, Any]:
        batches_before = server.batch_counters() if server.spec.name == "real" else {}
        cpu_before, started, wall_start = server.cpu_seconds(), time.monotonic(), time.time()
        machine_before, children_before = machine_cpu_seconds(), children_cpu_seconds()
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.spec.name} server exited ({server.process.returncode}) before the run"
            )
        try:
            run = run_wrk(
                server.url,
                endpoint,
                self.files.for_endpoint(endpoint),
                connections=connections,
                duration=duration,
                threads=self.args.wrk_threads,
                timeout=self.args.timeout,
            )
        except RuntimeError as error:
            state = "running" if server.process.poll() is None else f"exited ({server.process.returncode})"
            raise RuntimeError(f"{error}; the {server.spec.name} server is {state}") from error
        busy = server.cpu_seconds() - cpu_before
        wrk_busy = children_cpu_seconds() - children_before
        others = machine_cpu_seconds() - machine_before - busy - wrk_busy
        run["server_cpu_percent"] = round(100 * busy / (time.monotonic() - started), 1)
        run["server_cpu_ms_per_request"] = (
            round(1000 * busy / run["requests"], 3) if run["requests"] else None
        )
        run["wall_window"] = [wall_start, time.time()]
        elapsed = run["wall_window"][1] - wall_start
        run["wrk_cpu_percent"] = round(100 * wrk_busy / elapsed, 1)
        # Anything else busy on the machine meanwhile (other jobs): a large share spoils the run.
        run["other_processes_cpu_percent"] = round(max(0.0, 100 * others / elapsed), 1)
        if batches_before:
            kind = "recommend" if endpoint == "recommendations" else "predict"
            after = server.batch_counters().get(kind, (0.0, 0.0))
            before = batches_before.get(kind, (0.0, 0.0))
            calls = after[1] - before[1]
            run["model_calls"] = int(calls)
            run["mean_batch_size"] = round((after[0] - before[0]) / calls, 2) if calls else None
        return run

    def measure(
        self,
        spec: ServerSpec,
        plan: list[tuple[str, int]],
        duration: float,
        check: dict[str, Any] | None = None,
        profile_plan: tuple[tuple[str, int], ...] = (),
    ) -> dict[str, Any]:
        """Starts the server, optionally records its answers, runs `plan` and stops it."""
        speed_before = cpu_speed()
        server = self.start(spec)
        started = [server]
        result: dict[str, Any] = {
            "env": spec.env,
            "ready_seconds": round(server.ready_seconds, 3),
            "memory_at_ready": server.memory_mb(),
            "restarts": 0,
            "runs": [],
            "notes": [],
        }
        peak = result["memory_at_ready"]["peak_rss_mb"]
        try:
            if check is not None:
                result["answers"] = collect_answers(server, check)
            warmed: set[str] = set()
            for endpoint, connections in plan:
                if endpoint not in warmed and self.args.warmup > 0 and spec.name != "naive":
                    self.wrk(server, endpoint, min(connections, 8), self.args.warmup)
                    server.settle(self.probe, SETTLE_TIMEOUT_S)
                    warmed.add(endpoint)
                for attempt in range(self.args.retries + 1):
                    run = self.wrk(server, endpoint, connections, duration)
                    run["attempts"] = attempt + 1
                    memory = server.memory_mb()
                    peak = max(peak, memory["peak_rss_mb"])
                    log(
                        f"[{spec.name}] {endpoint:<15} c={connections:<4} "
                        f"{run['requests_per_s']:9.1f} req/s  "
                        f"p50 {run['latency_ms']['p50']:7.1f}  p99 {report.p99_text(run):>7} ms  "
                        f"errors {error_count(run)}  cpu {run['server_cpu_percent']:.0f}%  "
                        f"rss {memory['rss_mb']:.0f} MB  others {run['other_processes_cpu_percent']:.0f}%"
                        + (f"  mean batch {run['mean_batch_size']}" if run.get("mean_batch_size") else "")
                    )
                    if run["other_processes_cpu_percent"] <= OTHERS_WARNING_PERCENT:
                        break
                    if attempt < self.args.retries:
                        log(f"[{spec.name}] other processes were busy during that run: again in 20 s")
                        server.settle(self.probe, SETTLE_TIMEOUT_S)
                        time.sleep(20)
                    else:
                        note = (
                            f"{endpoint} c={connections}: other processes used "
                            f"{run['other_processes_cpu_percent']:.0f}% of a core during the run "
                            f"({attempt + 1} attempts); its figures are not clean"
                        )
                        log(f"[{spec.name}] WARNING {note}")
                        result["notes"].append(note)
                result["runs"].append(run)
                if not server.settle(self.probe, SETTLE_TIMEOUT_S):
                    # A backlog that would take long to drain (the naive server at high concurrency):
                    # restart rather than let it leak into the next run.
                    note = (
                        f"restarted after {endpoint} c={connections}: "
                        f"backlog not drained in {SETTLE_TIMEOUT_S:.0f} s"
                    )
                    log(f"[{spec.name}] {note}")
                    result["notes"].append(note)
                    server.stop(kill=True)
                    server = self.start(spec)
                    started.append(server)
                    result["restarts"] += 1
            for endpoint, connections in profile_plan:
                result.setdefault("profiles", []).append(
                    self.profile(server, endpoint, connections, duration)
                )
                server.settle(self.probe, SETTLE_TIMEOUT_S)
            memory = server.memory_mb()
            result["memory"] = {"peak_rss_mb": max(peak, memory["peak_rss_mb"]), "rss_mb": memory["rss_mb"]}
        except BaseException:
            log(f"[{spec.name}] failed; server log tail:\n{server.log_tail()}")
            raise
        finally:
            server.stop()
        if spec.gc_stats:
            attach_gc_pauses(result, [pause for s in started for pause in s.gc_pauses()])
        result["cpu_speed"] = {"before": speed_before, "after": cpu_speed()}
        return result

    def profile(self, server: Server, endpoint: str, connections: int, duration: float) -> dict[str, Any]:
        """An extra run with py-spy attached (not counted in the results: sampling slows it)."""
        stamp = self.args.stamp
        out = RESULTS / f"profile-{stamp}-{endpoint}-c{connections}.txt"
        seconds = max(2, int(duration) - 1)
        recorder = profiling.start_recording(
            server.pid, seconds, out, rate=PROFILE_RATE_HZ, native=self.args.profile_native
        )
        run = self.wrk(server, endpoint, connections, duration)
        _, errors = recorder.communicate(timeout=seconds + 60)
        if recorder.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed ({recorder.returncode}): {errors.strip()}")
        summary = profiling.summarise(out, PROFILE_RATE_HZ, seconds)
        log(f"[profile] {endpoint} c={connections} ({run['requests_per_s']:.0f} req/s while sampled), {out}:")
        log(profiling.summary_text(summary))
        return {"endpoint": endpoint, "connections": connections, "run": run, "file": str(out), **summary}


def cpu_speed() -> float:
    """Millions of iterations per second of a fixed pure-Python loop (best of 5): the machine's speed.

    This machine's speed drifts by up to 2x over minutes (shared host, invisible as steal time), so
    each server's runs record it before and after; ratios between servers measured at different
    speeds are skewed by the same factor.
    """
    best = float("inf")
    for _ in range(5):
        started, total = time.perf_counter(), 0
        for i in range(200_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - started)
    return round(200_000 / best / 1e6, 2)


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (wrk, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def attach_gc_pauses(result: dict[str, Any], pauses: list[tuple[float, int, float]]) -> None:
    """Per measured run: collections by generation, their total and longest pause, share of the run."""
    for run in [*result["runs"], *(p["run"] for p in result.get("profiles", []))]:
        start, end = run["wall_window"]
        inside = [(generation, seconds) for at, generation, seconds in pauses if start <= at <= end]
        by_generation = {}
        for generation in (0, 1, 2):
            times = [seconds for g, seconds in inside if g == generation]
            by_generation[f"gen{generation}"] = {
                "collections": len(times),
                "total_ms": round(1000 * sum(times), 1),
                "max_ms": round(1000 * max(times), 1) if times else 0.0,
            }
        total = sum(seconds for _, seconds in inside)
        run["gc"] = {**by_generation, "share_of_run": round(total / max(end - start, 1e-9), 4)}


def sample_users(encoders: dict[str, Any], count: int = 6, seed: int = 7) -> list[int]:
    rng = np.random.default_rng(seed)
    users = encoders["users"]
    picked = rng.choice(len(users), size=min(count, len(users)), replace=False)
    return sorted({users[0], *(int(users[i]) for i in picked)})


def collect_answers(server: Server, check: dict[str, Any]) -> dict[str, Any]:
    recommendations = {}
    for user in check["users"]:
        body = server.get_json(f"/users/{user}/recommendations?k=10", timeout=60)
        recommendations[str(user)] = [[r["movie_id"], r["predicted_rating"]] for r in body["recommendations"]]
    predictions = server.post_json("/predict", check["predict_body"], timeout=60)["predictions"]
    return {"recommendations": recommendations, "predict": [p["predicted_rating"] for p in predictions]}


def agreement(real: dict[str, Any], other: dict[str, Any], tolerance: float = 1e-3) -> dict[str, Any]:
    """Does `other` give the real server's top 10 (movie ids in order) and predictions?"""
    identical, tie_only, mismatched = 0, 0, []
    worst = 0.0
    for user, expected in real["recommendations"].items():
        got = other["recommendations"].get(user, [])
        if [m for m, _ in got] == [m for m, _ in expected]:
            identical += 1
        elif len(got) == len(expected) and all(
            abs(a[1] - b[1]) <= tolerance for a, b in zip(got, expected, strict=True)
        ):
            tie_only += 1  # the same scores, near-tied movies in another order
        else:
            mismatched.append(user)
        for a, b in zip(got, expected, strict=False):
            if a[0] == b[0]:
                worst = max(worst, abs(a[1] - b[1]))
    pairs = [(a, b) for a, b in zip(other["predict"], real["predict"], strict=True)]
    predict_diff = max((abs(a - b) for a, b in pairs if a is not None and b is not None), default=0.0)
    nulls_match = all((a is None) == (b is None) for a, b in pairs)
    return {
        "users": len(real["recommendations"]),
        "top10_identical": identical,
        "top10_equal_up_to_ties": tie_only,
        "top10_mismatched_users": mismatched,
        "max_rating_difference": round(worst, 6),
        "predict_max_difference": round(predict_diff, 6),
        "predict_unknowns_match": nulls_match,
        "agrees": not mismatched and worst <= tolerance and predict_diff <= tolerance and nulls_match,
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "wrk": wrk_version(),
        "load_average_at_start": os.getloadavg(),
    }


def bundle_summary(model_dir: Path) -> dict[str, Any]:
    path = (model_dir / "current").resolve()
    metadata = json.loads((path / "metadata.json").read_text())
    return {
        "path": str(path),
        "version": metadata.get("version"),
        "data": metadata.get("data"),
        "members": metadata.get("hyperparameters", {}).get("members"),
    }


def compare(args: argparse.Namespace, runner: Runner, check: dict[str, Any]) -> dict[str, Any]:
    """The servers one after another under the same plan, `--repeat` rounds (the naive one once)."""
    plan = [(e, c) for e in args.endpoints for c in args.connections]
    rounds: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(1, args.repeat + 1):
        for name in args.servers:
            if name == "naive" and round_number > 1:
                continue  # hundreds of times slower: one round says all there is to say
            if args.repeat > 1:
                log(f"=== round {round_number}/{args.repeat}: {name}")
            real = name == "real"
            spec = ServerSpec(
                name,
                args.model_dir,
                args.env if real else {},
                gc_stats=real and args.gc_stats,
                root=args.real_root,
            )
            duration = args.naive_duration if name == "naive" else args.duration
            profiling_now = args.profile and real and round_number == args.repeat
            profile_plan = tuple((e, 32) for e in args.endpoints) if profiling_now else ()
            result = runner.measure(spec, plan, duration, check if round_number == 1 else None, profile_plan)
            result["duration_s"] = duration
            rounds.setdefault(name, []).append(result)
            time.sleep(1)  # let the port and the cores go quiet between servers
    servers = {}
    for name, results in rounds.items():
        servers[name] = median_result(results) if len(results) > 1 else results[0]
        servers[name]["answers"] = results[0].get("answers")
        servers[name]["cpu_speed"] = results[0]["cpu_speed"] | {
            "after": results[-1]["cpu_speed"]["after"],
            "rounds": [r["cpu_speed"] for r in results],
        }
        if len(results) > 1:
            servers[name]["profiles"] = results[-1].get("profiles", [])
            servers[name]["notes"] = [note for r in results for note in r.get("notes", [])]
            servers[name]["restarts"] = sum(r.get("restarts", 0) for r in results)
    agreements = {}
    if "real" in servers:
        for name in ("floor", "naive"):
            if name in servers:
                agreements[name] = agreement(servers["real"]["answers"], servers[name]["answers"])
    return {"servers": servers, "agreement_with_real": agreements}


def sweep_configs(spec: str, combos: list[str]) -> list[dict[str, str]]:
    """Defaults first, then each value of each setting on its own, then the `--combo` sets."""
    from app.settings import Settings

    configs: list[dict[str, str]] = [{}]
    for part in spec.split(";"):
        if not part.strip():
            continue
        key, _, values = part.partition("=")
        key = key.strip().upper()
        field = Settings.model_fields.get(key.lower())
        if field is None:
            raise SystemExit(f"--sweep: {key} is not a server setting (see app/settings.py)")
        for value in values.split(","):
            if not same_value(field.default, value.strip()):
                configs.append({key: value.strip()})
    for combo in combos:
        configs.append(parse_env([p for p in combo.replace(" ", ",").split(",") if p]))
    return configs


def same_value(default: object, value: str) -> bool:
    try:
        return float(default) == float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(default).lower() == value.lower()


def sweep(args: argparse.Namespace, runner: Runner) -> dict[str, Any]:
    """Every configuration in turn, `--repeat` rounds interleaved; each cell is the median round's."""
    levels = args.sweep_connections
    plan = [("recommendations", c) for c in levels]
    if "predict" in args.endpoints:
        plan.append(("predict", 32))
    configs = sweep_configs(args.sweep, args.combo)
    floors: list[dict[str, Any]] = []
    samples: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(1, args.repeat + 1):
        if "floor" in args.servers:
            floors.append(
                runner.measure(ServerSpec("floor", args.model_dir), [("recommendations", 32)], args.duration)
            )
        for config in configs:
            env = {**args.env, **config}
            label = " ".join(f"{k}={v}" for k, v in config.items()) or "defaults"
            log(f"=== sweep round {round_number}/{args.repeat}: {label}")
            spec = ServerSpec("real", args.model_dir, env, gc_stats=args.gc_stats, root=args.real_root)
            try:
                result = runner.measure(spec, plan, args.duration)
            except RuntimeError as error:  # one broken configuration does not end the sweep
                log(f"=== sweep: {label} failed: {error}")
                result = {"env": env, "error": str(error)}
            samples.setdefault(label, []).append(result)
            time.sleep(1)
    floor = median_result(floors) if floors else None
    return {"floor": floor, "configs": [{"label": k, **median_result(v)} for k, v in samples.items()]}


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result standing for several rounds: per run, the round with the median throughput
    (its latencies with it), errors summed over rounds, every round's throughput kept."""
    good = [r for r in results if "error" not in r]
    if not good:
        return results[0]
    merged = dict(good[0])
    merged["rounds"] = len(results)
    merged["failed_rounds"] = len(results) - len(good)
    merged["ready_seconds"] = float(np.median([r["ready_seconds"] for r in good]))
    merged["memory"] = {
        "peak_rss_mb": max(r["memory"]["peak_rss_mb"] for r in good),
        "rss_mb": max(r["memory"]["rss_mb"] for r in good),
    }
    runs = []
    for i, first in enumerate(good[0]["runs"]):
        same = [r["runs"][i] for r in good if len(r["runs"]) > i]
        ordered = sorted(same, key=lambda run: run["requests_per_s"])
        middle = dict(ordered[len(ordered) // 2])
        middle["requests_per_s_rounds"] = [run["requests_per_s"] for run in same]
        middle["p99_ms_rounds"] = [run["latency_ms"]["p99"] for run in same]
        middle["non_2xx"] = sum(run["non_2xx"] for run in same)
        middle["socket_errors"] = {
            key: sum(run["socket_errors"][key] for run in same) for key in first["socket_errors"]
        }
        middle["other_processes_cpu_percent"] = max(run["other_processes_cpu_percent"] for run in same)
        runs.append(middle)
    merged["runs"] = runs
    return merged


def sweep_table(result: dict[str, Any]) -> tuple[str, str]:
    floor_rps = None
    if result["floor"]:
        floor_rps = result["floor"]["runs"][0]["requests_per_s"]
    header = f"{'settings':<36}{'ready s':>8}{'RSS MB':>8}{'other%':>7}"
    columns: list[tuple[str, int]] = []
    measured = [row for row in result["configs"] if "error" not in row]
    if not measured:
        return "every configuration failed", "no result"
    for run in measured[0]["runs"]:
        columns.append((run["endpoint"], run["connections"]))
        short = "recs" if run["endpoint"] == "recommendations" else "pred"
        title = f"{short}@{run['connections']} req/s"
        header += f"{title:>16}{'p99':>8}{'err':>6}"
    if floor_rps:
        header += f"{'recs@32/floor':>15}"
    header += f"{'recs@32 rounds':>22}"
    lines = [header, "-" * len(header)]
    scored = []
    for row in result["configs"]:
        if "error" in row:
            lines.append(f"{row['label']:<36}failed: {row['error'][:150]}")
            continue
        others = max(r.get("other_processes_cpu_percent", 0) for r in row["runs"])
        line = f"{row['label']:<36}{row['ready_seconds']:>8.2f}{row['memory']['peak_rss_mb']:>8.0f}"
        line += f"{others:>7.0f}"
        by_key = {(r["endpoint"], r["connections"]): r for r in row["runs"]}
        met = 0
        for key in columns:
            run = by_key.get(key)
            if run is None:
                line += f"{'-':>16}{'-':>8}{'-':>6}"
                continue
            line += f"{run['requests_per_s']:>16.1f}{report.p99_text(run):>8}{error_count(run):>6}"
            if key[1] == 32 and run["latency_ms"]["p99"] <= report.TARGET_P99_MS and error_count(run) == 0:
                met += 1
            if key[1] == 128 and error_count(run) == 0:
                met += 1
        recs32 = by_key.get(("recommendations", 32))
        if floor_rps and recs32:
            share = recs32["requests_per_s"] / floor_rps
            met += share >= report.TARGET_FLOOR_SHARE
            line += f"{share:>15.2f}"
        if recs32:
            rounds = "/".join(
                f"{v:.0f}" for v in recs32.get("requests_per_s_rounds", [recs32["requests_per_s"]])
            )
            line += f"{rounds:>22}"
        lines.append(line)
        scored.append((met, recs32["requests_per_s"] if recs32 else 0.0, row["label"]))
    best = max(scored)
    verdict = (
        f"best: {best[2]} ({best[0]} load targets met, {best[1]:.0f} req/s for recommendations at 32); "
        "identical settings differ by about 6% from run to run, so read closer figures as ties, "
        f"and distrust rows whose other% exceeds {OTHERS_WARNING_PERCENT:.0f}"
    )
    return "\n".join(lines), verdict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("MOVIELENS_DIR"))
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    parser.add_argument("--duration", type=float, default=10, help="seconds per measured run (default 10)")
    parser.add_argument("--connections", type=parse_list, default=[8, 32, 128], help="default 8,32,128")
    parser.add_argument(
        "--endpoints", type=lambda t: parse_list(t, str), default=list(ENDPOINTS), help="default: both"
    )
    parser.add_argument(
        "--servers", type=lambda t: parse_list(t, str), default=list(report.SERVERS), help="real,floor,naive"
    )
    parser.add_argument(
        "--naive-duration",
        type=float,
        help="seconds per run for the naive server (default: min(--duration, 10)); it is restarted "
        "after a run whose backlog does not drain in 15 s",
    )
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--timeout", type=float, default=5.0, help="wrk --timeout in seconds (default 5)")
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="runs again (up to this many times, 20 s apart) when other processes used over "
        f"{OTHERS_WARNING_PERCENT:.0f}%% of a core during a run (default 2)",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before each endpoint")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="server setting for the real server"
    )
    parser.add_argument(
        "--sweep",
        nargs="?",
        const=DEFAULT_SWEEP,
        help=f"measure only the real server under each setting in turn (default grid: {DEFAULT_SWEEP})",
    )
    parser.add_argument("--combo", action="append", default=[], help="with --sweep: a set such as A=1,B=2")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds, interleaved (real, floor, real, floor, ...; with --sweep: every setting per round); "
        "each figure is the median round's. The naive server runs once",
    )
    parser.add_argument("--sweep-connections", type=parse_list, default=[32, 128], help="default 32,128")
    parser.add_argument("--profile", action="store_true", help="py-spy the real server at 32 connections")
    parser.add_argument("--profile-native", action="store_true", help="with --profile: native frames too")
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="run the real server through benchmarks.gcstats and report its garbage-collector pauses",
    )
    parser.add_argument(
        "--real-root",
        type=Path,
        default=REPO,
        help="serve the `app` package of another checkout as the real server, e.g. a snapshot made "
        "with `git archive HEAD app | tar -x -C /tmp/before` (default: this repository)",
    )
    parser.add_argument("--training", action="store_true", help="also measure training speed (about 2 min)")
    parser.add_argument("--skip-load", action="store_true", help="no load runs (with --training)")
    args = parser.parse_args(argv)
    args.env = parse_env(args.env)
    args.model_dir = args.model_dir.resolve()
    args.real_root = args.real_root.resolve()
    if not (args.real_root / "app" / "__main__.py").is_file():
        parser.error(f"--real-root {args.real_root} has no app/__main__.py")
    if args.data_dir is not None:
        args.data_dir = Path(args.data_dir).resolve()
    if args.naive_duration is None:
        args.naive_duration = min(args.duration, 10)
    unknown = set(args.servers) - set(report.SERVERS) or set(args.endpoints) - set(ENDPOINTS)
    if unknown:
        parser.error(f"unknown server or endpoint: {', '.join(sorted(unknown))}")
    args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    load = not args.skip_load
    if load and wrk_path() is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    if args.profile and profiling.py_spy_path() is None:
        print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    document: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.load", *sys.argv[1:]]),
        "machine": machine(),
        "settings": {
            k: v if not isinstance(v, Path) else str(v) for k, v in vars(args).items() if k not in ("stamp",)
        },
        "git": git_state(args.real_root),
    }
    outputs: list[str] = []

    if args.training:
        rows = training_speed.measure(args.data_dir, list(training_speed.CONFIGURATIONS))
        document["training"] = rows
        outputs.append("Training speed (python -m training on the same data, one run each):\n")
        outputs.append(training_speed.table(rows) + "\n")
        log(outputs[-1])

    if load:
        document["bundle_trained"] = ensure_bundle(args.model_dir, args.data_dir)
        document["bundle"] = bundle_summary(args.model_dir)
        encoders = json.loads((Path(document["bundle"]["path"]) / "encoders.json").read_text())
        with tempfile.TemporaryDirectory(prefix="bench-load-") as folder:
            from benchmarks.wrk import write_load_files

            files = write_load_files(Path(document["bundle"]["path"]) / "encoders.json", Path(folder))
            check = {
                "users": sample_users(encoders),
                "predict_body": json.loads(files.bodies.read_text().splitlines()[0]),
            }
            runner = Runner(args, files, Path(folder), check["users"][0])
            if args.sweep:
                result = sweep(args, runner)
                document["sweep"] = result
                table, verdict = sweep_table(result)
                outputs.append(
                    f"Real server under each setting ({args.duration:g} s per run):\n{table}\n{verdict}\n"
                )
            else:
                document.update(compare(args, runner, check))
                outputs.append(comparison_text(document, args))
    name = "sweep" if args.sweep else ("load" if load else "training")
    json_path = RESULTS / f"{name}-{args.stamp}.json"
    json_path.write_text(json.dumps(document, indent=2, default=str))
    saved = [str(json_path.relative_to(REPO))]
    if load and not args.sweep:
        png = RESULTS / f"{name}-{args.stamp}.png"
        report.plot(document["servers"], png, f"{document['bundle']['version']} on {os.cpu_count()} cores")
        saved.append(str(png.relative_to(REPO)))
    print("\n".join(outputs))
    print("saved: " + ", ".join(saved))
    return 0


def comparison_text(document: dict[str, Any], args: argparse.Namespace) -> str:
    servers = document["servers"]
    parts = [
        f"Load: wrk -t{args.wrk_threads} -c N -d {args.duration:g}s --timeout {args.timeout:g}s on loopback; "
        f"bundle {document['bundle']['version']} ({document['bundle']['data']['users']} users, "
        f"{document['bundle']['data']['movies']} movies).",
    ]
    if "naive" in servers and args.naive_duration != args.duration:
        parts.append(
            f"The naive server runs {args.naive_duration:g} s per level (it is hundreds of times slower)."
        )
    for name, server in servers.items():
        for note in server.get("notes", []):
            parts.append(f"{name}: {note}")
    parts += ["", report.runs_table(servers), ""]
    rows = report.ratios(servers)
    document["ratios"] = rows
    parts += [
        "Real server against the references (throughput ratio; p99 in ms):",
        report.ratios_table(servers, rows),
    ]
    parts += [
        "",
        f"{'server':<8}{'ready s':>9}{'peak RSS MB':>13}{'RSS MB':>9}{'restarts':>10}"
        f"{'cpu speed before/after':>24}",
    ]
    for name, server in servers.items():
        memory = server["memory"]
        parts.append(
            f"{name:<8}{server['ready_seconds']:>9.2f}{memory['peak_rss_mb']:>13.0f}{memory['rss_mb']:>9.0f}"
            f"{server['restarts']:>10}"
            f"{'{before} / {after}'.format(**server['cpu_speed']):>24}"
        )
    speeds = [
        value
        for server in servers.values()
        for measured in server["cpu_speed"].get("rounds", [server["cpu_speed"]])
        for value in (measured["before"], measured["after"])
    ]
    if speeds and max(speeds) > 1.1 * min(speeds):
        parts.append(
            f"WARNING: the machine's speed drifted from {min(speeds)} to {max(speeds)} (a fixed Python loop, "
            "millions of iterations/s) during the measurements: ratios between servers are skewed by it"
        )
    gc_lines = gc_table(servers.get("real", {}))
    if gc_lines:
        parts += ["", "Garbage collection in the real server during each run:", gc_lines]
    agreements = document.get("agreement_with_real", {})
    if agreements:
        parts.append("")
        for name, found in agreements.items():
            parts.append(
                f"{name} vs real on {found['users']} users: top-10 identical {found['top10_identical']}, "
                f"equal up to ties {found['top10_equal_up_to_ties']}, mismatched "
                f"{found['top10_mismatched_users'] or 'none'}; "
                f"max rating difference {found['max_rating_difference']}; "
                f"/predict max difference {found['predict_max_difference']} -> "
                f"{'AGREES' if found['agrees'] else 'DISAGREES'}"
            )
    checks = report.targets(servers)
    document["targets"] = checks
    if checks:
        parts += ["", "Targets (real server):", report.targets_table(checks)]
    return "\n".join(parts) + "\n"


def gc_table(server: dict[str, Any]) -> str:
    runs = [r for r in server.get("runs", []) if "gc" in r]
    if not runs:
        return ""
    header = f"{'endpoint':<17}{'conns':>6}{'gen0':>7}{'gen1':>7}{'gen2':>7}"
    header += f"{'gen2 ms total':>15}{'gen2 max ms':>13}{'all gc % of run':>17}"
    lines = [header, "-" * len(header)]
    for run in runs:
        gc = run["gc"]
        lines.append(
            f"{run['endpoint']:<17}{run['connections']:>6}{gc['gen0']['collections']:>7}"
            f"{gc['gen1']['collections']:>7}{gc['gen2']['collections']:>7}{gc['gen2']['total_ms']:>15.0f}"
            f"{gc['gen2']['max_ms']:>13.0f}{100 * gc['share_of_run']:>17.1f}"
        )
    return "\n".join(lines)


def git_state(real_root: Path) -> dict[str, Any]:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "app", "training"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    digest = hashlib.sha256()
    for path in sorted((real_root / "app").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    # Others edit app/ while benchmarks run: the digest says which server code was measured.
    return {
        "real_root": str(real_root),
        "head": head,
        "app_or_training_modified": bool(dirty),
        "app_sources_sha256": digest.hexdigest()[:16],
    }


if __name__ == "__main__":
    sys.exit(main())
