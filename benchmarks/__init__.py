"""Benchmarks of the service and of its training (benchmarks/README.md); results in benchmarks/results/."""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"  # git-ignored
log = functools.partial(print, file=sys.stderr, flush=True)


def stamp() -> str:
    """The time now, as result files are named: 20261130T043447Z."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def save(kind: str, args: argparse.Namespace, document: dict[str, Any], at: str | None = None) -> Path:
    """Writes benchmarks/results/<kind>-<at or now>.json: what every run records (the command, its
    settings, the machine, the commit) then `document`; what JSON lacks is written as text."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    context = {
        "command": " ".join([f"python -m benchmarks.{Path(sys.argv[0]).stem}", *sys.argv[1:]]),
        "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": vars(args),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "head": head.stdout.strip(),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{kind}-{at or stamp()}.json"
    path.write_text(json.dumps(context | document, indent=1, default=str))
    return path


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """`python -m benchmarks.<module>`'s parser, described by the first line of its docstring."""
    return argparse.ArgumentParser(f"python -m benchmarks.{module}", description=(doc or "").split("\n")[0])
