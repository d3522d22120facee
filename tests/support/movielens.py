"""The real ml-latest-small, for the tests that need it: `MOVIELENS_DIR`, a folder or a `.zip`.

A relative path is taken from the repository root, then the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import REPO


def locate() -> tuple[Path | None, str]:
    """The real data from `MOVIELENS_DIR`, or None and the reason it is unavailable."""
    value = os.environ.get("MOVIELENS_DIR")
    if not value:
        return None, "MOVIELENS_DIR is not set (point it at ml-latest-small, a folder or .zip)"
    given = Path(value).expanduser()
    candidates = [given] if given.is_absolute() else [REPO / given, Path.cwd() / given]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve(), ""
    return None, f"MOVIELENS_DIR={value} does not exist (tried {', '.join(map(str, candidates))})"
