"""Planted bugs: each plausible bug applied to a copy of the project, and the tests that must catch it.

`python -m tests.planted` (or `make planted-bugs`) copies the project into a temporary folder once
per bug, makes one text substitution there, runs the test files named for that bug, and prints
CAUGHT or SURVIVED. The checkout is never modified. It first runs every named test file on the
unmodified copy: a test that fails anyway would "catch" every bug. The exit status is non-zero if
a bug survives, a substitution no longer matches the code (the bug list has gone stale), or the
baseline fails.

Each bug is a plain substitution so that it can be read, and reapplied by hand, at a glance:
`python -m tests.planted --keep NAME` leaves the bugged copy in place for that.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("app", "training", "tests", "benchmarks", "pyproject.toml")
print = functools.partial(print, flush=True)  # progress shows as it happens, even in a file
IGNORED = shutil.ignore_patterns("__pycache__", ".hypothesis", "*.pyc")


@dataclass(frozen=True)
class Bug:
    """One plausible bug: `old` replaced by `new` in `file` (exactly one match), and the test
    files that must fail on it."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


BUGS = [
    Bug(
        "/predict results handed back to a batch's requests in reverse order",
        "app/inference.py",
        "zip(indices, np.split(stars, bounds), strict=True)",
        "zip(indices[::-1], np.split(stars, bounds), strict=True)",
        ("tests/app/test_inference.py",),
    ),
    Bug(
        "the micro-batcher hands results back in reverse order",
        "app/batcher.py",
        "zip(batch, results, strict=True)",
        "zip(batch, list(results)[::-1], strict=True)",
        ("tests/app/test_batcher.py",),
    ),
    Bug(
        "publish by unlink-then-symlink instead of an atomic rename",
        "app/bundle_store.py",
        '    link = model_dir / f".{CURRENT}.{os.getpid()}"\n'
        "    link.unlink(missing_ok=True)\n"
        "    link.symlink_to(version, target_is_directory=True)\n"
        "    os.replace(link, model_dir / CURRENT)\n",
        "    link = model_dir / CURRENT\n"
        "    link.unlink(missing_ok=True)\n"
        "    link.symlink_to(version, target_is_directory=True)\n",
        ("tests/app/test_bundle_store.py",),
    ),
    Bug(
        "early stopping watches the validation part instead of the training slice",
        "training/fit.py",
        "watch_rows = stop_rows if len(stop_rows) else validation_rows",
        "watch_rows = validation_rows",
        ("tests/training/test_fit.py",),
    ),
    Bug(
        "the popular fallback ranks by mean rating instead of by number of ratings",
        "app/served.py",
        'self.popular_rows = np.argsort(-self.rating_counts, kind="stable")',
        'self.popular_rows = np.argsort(-np.nan_to_num(self.mean_ratings), kind="stable")',
        ("tests/app/test_served.py", "tests/app/api/test_recommendations.py"),
    ),
    Bug(
        "the micro-batcher ignores its window",
        "app/batcher.py",
        "async with asyncio.timeout(self._window):",
        "async with asyncio.timeout(0):",
        ("tests/app/test_batcher.py",),
    ),
    Bug(
        "the queue-full check admits one item too many (>= became >)",
        "app/batcher.py",
        "self._queued_work + cost > self._max_queue",
        "self._queued_work > self._max_queue",
        ("tests/app/test_batcher.py",),
    ),
    Bug(
        "the first user's rated movies are masked for every user of a batch",
        "app/inference.py",
        "vectors, seen = bundle.vectors_of(states), [s.seen for s in states]",
        "vectors, seen = bundle.vectors_of(states), [states[0].seen for s in states]",
        ("tests/app/test_inference.py", "tests/app/api/test_recommendations.py"),
    ),
    Bug(
        "top-k forgets a user's last rated movie",
        "app/ranking.py",
        "cost[row, columns] = np.inf",
        "cost[row, columns[:-1]] = np.inf",
        ("tests/app/test_ranking.py",),
    ),
    Bug(
        "recall divided by k",
        "training/evaluate.py",
        'f"recall@{k}": float(np.mean(hits.sum(1) / n_relevant))',
        'f"recall@{k}": float(np.mean(hits.sum(1) / k))',
        ("tests/training/test_evaluate.py",),
    ),
    Bug(
        "precision divided by the number of relevant movies",
        "training/evaluate.py",
        'f"precision@{k}": float(np.mean(hits.sum(1) / k))',
        'f"precision@{k}": float(np.mean(hits.sum(1) / n_relevant))',
        ("tests/training/test_evaluate.py",),
    ),
    Bug(
        "a batch that spans a live swap is scored on its first request's bundle",
        "app/inference.py",
        "groups.setdefault(id(request.bundle), (request.bundle, []))",
        "groups.setdefault(id(requests[0].bundle), (requests[0].bundle, []))",
        ("tests/app/test_inference.py", "tests/app/test_service.py"),
    ),
    Bug(
        "rating fold-in forgets the penalty in its gradient",
        "app/fold_in.py",
        "gradient = features.T @ (scores - targets) + penalty @ theta",
        "gradient = features.T @ (scores - targets)",
        ("tests/app/test_fold_in.py",),
    ),
    Bug(
        "ranking fold-in weighs every rated movie alike, whatever its stars",
        "app/served.py",
        "weights = (stars / self.encoders.rating_max).astype(np.float32)",
        "weights = np.ones_like(stars, dtype=np.float32)",
        ("tests/app/test_served.py",),
    ),
    Bug(
        "the ranking tables count ratings, ignoring their stars",
        "training/ranking.py",
        "values = (stars / top_stars).astype(np.float64)",
        "values = np.ones_like(stars, dtype=np.float64)",
        ("tests/training/test_ranking.py",),
    ),
    Bug(
        "the ranking tables drop EASE's per-movie scale",
        "training/ranking.py",
        "scales=(1.0 / diagonal).astype(np.float32)",
        "scales=np.ones_like(diagonal, dtype=np.float32)",
        ("tests/training/test_ranking.py",),
    ),
    Bug(
        "the manifest check compares sizes only, not SHA-256",
        "app/bundle.py",
        "if file.stat().st_size != entry.bytes or _sha256(file) != entry.sha256:",
        "if file.stat().st_size != entry.bytes:",
        ("tests/app/test_bundle.py",),
    ),
    Bug(
        "the feedback store answers put_many in movie order, not the order given",
        "app/feedback/store.py",
        "return [stored[movie_id] for movie_id, _ in items]",
        "return [stored[movie_id] for movie_id, _ in sorted(items)]",
        ("tests/app/feedback/test_feedback_store.py",),
    ),
    Bug(
        "the same rating stored again rewrites its row (and rated_at)",
        "app/feedback/store.py",
        "            where=ratings.c.rating != insert.excluded.rating,\n",
        "",
        ("tests/app/feedback/test_feedback_store.py",),
    ),
    Bug(
        "a streamed body is limited chunk by chunk, not in total",
        "app/request_limits.py",
        "if received > self.max_body_bytes:",
        "if size > self.max_body_bytes:",
        ("tests/app/test_body_limit.py", "tests/app/test_request_limits.py"),
    ),
    Bug(
        "a declared content-length over the limit is not refused up front (the body is read)",
        "app/request_limits.py",
        "if declared and int(declared) > self.max_body_bytes:",
        "if False:",
        ("tests/app/test_body_limit.py",),
    ),
    Bug(
        "body bytes in flight are never given back",
        "app/request_limits.py",
        "            self.inflight_body_bytes -= held\n",
        "            pass\n",
        ("tests/app/test_request_limits.py",),
    ),
    Bug(
        "the app keeps the bundle it was handed, so the first one outlives every swap",
        "app/main.py",
        "await service.start(handover.pop() if handover else None)",
        "await service.start(handover[0] if handover else None)",
        ("tests/app/test_memory.py",),
    ),
]


def copy_project(into: Path) -> Path:
    """The files the tests need, copied (never linked) into `into`."""
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=IGNORED)
        else:
            shutil.copy2(source, into / name)
    return into


def plant(bug: Bug, project: Path) -> None:
    """Applies the bug's substitution; raises ValueError when `old` no longer matches exactly once."""
    path = project / bug.file
    text = path.read_text()
    if text.count(bug.old) != 1:
        raise ValueError(f"{bug.file}: {bug.old!r} found {text.count(bug.old)} times, not once")
    path.write_text(text.replace(bug.old, bug.new))


def run_tests(project: Path, tests: tuple[str, ...] | list[str]) -> tuple[int, str]:
    """pytest's exit status on `tests` in `project` (its own code first on the path), and its tail."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    return result.returncode, "\n".join(result.stdout.splitlines()[-3:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only the bugs whose name contains one of these")
    parser.add_argument("--keep", action="store_true", help="keep the bugged copies and print where")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on unmodified code")
    args = parser.parse_args(argv)
    bugs = [bug for bug in BUGS if not args.names or any(n in bug.name for n in args.names)]
    failed = False
    with tempfile.TemporaryDirectory(prefix="planted-") as scratch:
        if not args.no_baseline:
            files = sorted({test for bug in bugs for test in bug.tests})
            status, tail = run_tests(copy_project(Path(scratch) / "baseline"), files)
            print(f"baseline ({len(files)} test files): {'passed' if status == 0 else 'FAILED'}")
            if status != 0:
                print(tail)
                return 2
        for number, bug in enumerate(bugs):
            project = copy_project(Path(tempfile.mkdtemp(prefix=f"bug{number}-", dir=scratch)))
            try:
                plant(bug, project)
            except ValueError as error:
                print(f"STALE     {bug.name}: {error}")
                failed = True
                continue
            started = time.monotonic()
            status, tail = run_tests(project, bug.tests)
            caught = status == 1  # tests failed; 2 to 5 are errors of the run itself
            verdict = "CAUGHT  " if caught else "SURVIVED"
            print(f"{verdict}  {bug.name}  ({time.monotonic() - started:.0f} s)")
            if not caught:
                print(f"          pytest exit {status}: {tail}")
                failed = True
            if caught:
                print("          " + next((line for line in tail.splitlines() if "FAILED" in line), tail))
            if args.keep:
                kept = Path(tempfile.mkdtemp(prefix="planted-kept-"))
                shutil.copytree(project, kept, dirs_exist_ok=True)
                print(f"          kept in {kept}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
