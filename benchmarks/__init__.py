"""Benchmarks of the service and of its training (benchmarks/README.md); results in benchmarks/results/."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")  # git-ignored


def stamp() -> str:
    """The time now, as result files are named: 20261130T043447Z."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def save(kind: str, document: dict[str, Any], at: str | None = None) -> Path:
    """Writes `document` to benchmarks/results/<kind>-<at or now>.json (what JSON lacks, as text)."""
    RESULTS.mkdir(exist_ok=True)
    (path := RESULTS / f"{kind}-{at or stamp()}.json").write_text(json.dumps(document, indent=1, default=str))
    return path
