"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, a unix socket there.

No TCP port is opened (`listen_addresses=''`), so nothing collides with other servers on the
machine. PostgreSQL refuses to run as root; as root the cluster runs as the `postgres` user that
Debian's `postgresql` package creates. The binaries come from `PG_BIN`, else the newest
`/usr/lib/postgresql/*/bin`, else `PATH` (`apt-get install -y postgresql` provides them).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

SOCKET_PORT = 5432  # names the socket file only: no TCP listener
SHARED_DATABASE = "feedback"


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    given = os.environ.get("PG_BIN")
    candidates = [Path(given)] if given else []
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    candidates += reversed(debian)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


@contextlib.contextmanager
def running_cluster(binaries: Path) -> Iterator[PostgresCluster]:
    """A cluster initdb'd and started, removed on leaving (the tests' session cluster, and the
    benchmarks' throwaway one)."""
    cluster = PostgresCluster(binaries)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


class PostgresCluster:
    """One cluster in its own folder; `start`, `stop`, `pause`, `resume`, and a database per test."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="feedback-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_user: dict[str, object] = {}
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root needs the `postgres` user (apt-get install postgresql)"
                ) from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
        self._names = itertools.count(1)
        self.paused = False
        self._shared_created = False

    def _run(self, *command: str, timeout: float = 60) -> None:
        finished = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
            **self._as_user,
        )
        if finished.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed: {finished.stdout}{finished.stderr}{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        return self.log.read_text()[-2000:] if self.log.is_file() else ""

    def init(self) -> None:
        self._run(
            str(self.binaries / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-k {self.root} -c listen_addresses='' -p {SOCKET_PORT} -c max_connections=200 "
            "-c shared_buffers=32MB"
        )
        self._run(
            str(self.binaries / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def processes(self) -> list[int]:
        """The postmaster and every backend it started."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for status in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = status.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                children.append(int(status.parent.name))
        return [postmaster, *children]

    def running(self) -> bool:
        return (self.data / "postmaster.pid").is_file()

    def pause(self) -> None:
        """Freezes the whole server (SIGSTOP): connections open, nothing answers. A hung database."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)
        self.paused = False

    def ensure_running(self) -> None:
        """Undoes what a failed test may have left: a frozen or stopped server."""
        if self.paused:
            self.resume()
        if not self.running():
            self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.root}&port={SOCKET_PORT}"

    def psql(self, sql: str, database: str = "postgres") -> None:
        self._run(
            str(self.binaries / "psql"), "-h", str(self.root), "-p", str(SOCKET_PORT), "-U", "postgres",
            "-d", database, "-v", "ON_ERROR_STOP=1", "-qc", sql,
        )  # fmt: skip

    def new_database(self) -> str:
        """A fresh, empty database of its own; its URL (CREATE DATABASE takes about half a second)."""
        name = f"feedback_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def emptied_database(self) -> str:
        """The shared test database, emptied (its schema dropped and made anew, ~50 ms); its URL."""
        if not self._shared_created:
            self.psql(f"CREATE DATABASE {SHARED_DATABASE}")
            self._shared_created = True
        self.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{SHARED_DATABASE}' AND pid <> pg_backend_pid(); "
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
            SHARED_DATABASE,
        )
        return self.url(SHARED_DATABASE)

    def destroy(self) -> None:
        try:
            if self.running():
                self.resume()
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
