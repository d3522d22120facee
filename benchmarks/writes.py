"""Write throughput of the feedback store: one replica storing ratings in SQLite, then in PostgreSQL.

    python -m benchmarks.writes --model-dir /tmp/m [--duration 10] [--connections 8,32]

wrk sends `PUT /users/{id}/ratings/{movie}` with random stars for new users and known movies
(benchmarks/load.lua's `ratings` workload) to one `python -m app`, whose feedback database is the
default SQLite file (WAL, synchronous=FULL), then a throwaway PostgreSQL cluster on this machine
(tests/support/postgres.py; fsync on, as shipped). Both are durable: a write is acknowledged once
committed to disk.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import asdict
from functools import partial
from pathlib import Path

from app.bundle_store import current_bundle_path
from benchmarks import save
from benchmarks.fleet import process_cpu_seconds
from benchmarks.servers import Server
from benchmarks.wrk import run_wrk, write_load_files
from tests.support.postgres import PostgresCluster, find_binaries


def database_cpu_seconds(cluster: PostgresCluster) -> float:
    """CPU time of PostgreSQL: its live processes', and its exited backends' (counted in the
    postmaster's children's times once reaped)."""
    postmaster, *backends = cluster.processes()
    fields = Path(f"/proc/{postmaster}/stat").read_text().rpartition(")")[2].split()
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return reaped + process_cpu_seconds(postmaster) + sum(map(process_cpu_seconds, backends))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m benchmarks.writes", description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=lambda t: [int(c) for c in t.split(",")], default=[8, 32])
    args = parser.parse_args(argv)

    binaries = find_binaries()
    if binaries is None:
        raise SystemExit("PostgreSQL is not installed: `apt-get install -y postgresql` (Debian/Ubuntu)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="writes-") as scratch:
        work, cluster = Path(scratch), PostgresCluster(binaries)
        files = write_load_files(current_bundle_path(args.model_dir), work)
        try:
            cluster.init()
            cluster.start()
            engines = {"sqlite": {"STATE_DIR": str(work / "state")}, "postgresql": {}}
            engines["postgresql"]["DATABASE_URL"] = cluster.new_database()
            for engine, env in engines.items():
                with Server(args.model_dir, {"RELOAD_INTERVAL_S": "0", **env}, log_dir=work) as server:
                    run_wrk(server.url, "ratings", files["ratings"], 4, 2)  # warm-up: schema, pools
                    for connections in args.connections:
                        database = partial(database_cpu_seconds, cluster) if engine == "postgresql" else float
                        before = server.cpu_seconds(), database()
                        run = run_wrk(server.url, "ratings", files["ratings"], connections, args.duration)
                        server_cpu = 100 * (server.cpu_seconds() - before[0]) / run.seconds
                        database_cpu = 100 * (database() - before[1]) / run.seconds
                        row = {"engine": engine, **asdict(run), "server_cpu_percent": round(server_cpu, 1)}
                        rows.append(row | {"database_cpu_percent": round(database_cpu, 1)})
                        print(
                            f"{engine:10s} c={connections:<3d} {run.requests_per_s:8.1f} writes/s  "
                            f"p99 {run.p99_text:>7} ms  errors {run.errors}  server {server_cpu:.0f}% cpu  "
                            f"database {database_cpu:.0f}%  load {os.getloadavg()[0]:.2f}",
                            flush=True,
                        )
        finally:
            cluster.destroy()
    print(f"saved: {save('writes', {'command': ' '.join(sys.argv), 'settings': vars(args), 'runs': rows})}")
    return 0 if all(row["non_2xx"] + row["timeouts"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
