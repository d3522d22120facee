"""The real ml-latest-small, for the tests that need it: found, downloaded, or a clear failure.

`MOVIELENS_DIR` (a folder or a `.zip`; a relative path is taken from the repository root, then
the working directory) when it is set, as CI sets it. Otherwise the official archive, through
the project's own downloader (`training.data.resolve_source`: downloaded once, SHA-256 checked,
cached in ~/.cache/movielens or $MOVIELENS_CACHE_DIR). When neither works the tests fail, with
one line saying what to set; they are never skipped.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from tests.support import REPO

HOW_TO = "set MOVIELENS_DIR to a folder or .zip of ml-latest-small"


class Unavailable(Exception):
    """The real data can be neither found nor downloaded; the message says what to set."""


def locate() -> Path:
    """The real data, a folder or a `.zip`, from `MOVIELENS_DIR` or else the download."""
    value = os.environ.get("MOVIELENS_DIR")
    if value:
        given = Path(value).expanduser()
        candidates = [given] if given.is_absolute() else [REPO / given, Path.cwd() / given]
        for candidate in candidates:
            if candidate.exists():
                return candidate.resolve()
        tried = ", ".join(map(str, candidates))
        raise Unavailable(f"{HOW_TO}: MOVIELENS_DIR={value} does not exist (tried {tried})")
    from training.data import DataError, resolve_source

    try:
        return resolve_source(None)
    except DataError as error:
        raise Unavailable(f"no real MovieLens data: {HOW_TO} (the download failed: {error})") from None


def as_folder(source: Path, scratch: Path) -> Path:
    """The data as a folder: `source` itself, or its archive unpacked under `scratch`."""
    if source.is_dir():
        if not (source / "ratings.csv").is_file():
            raise Unavailable(f"{HOW_TO}: {source} holds no ratings.csv")
        return source
    with zipfile.ZipFile(source) as archive:
        archive.extractall(scratch)
    found = sorted(scratch.rglob("ratings.csv"), key=lambda p: len(p.parts))
    if not found:
        raise Unavailable(f"{HOW_TO}: {source} holds no ratings.csv")
    return found[0].parent


def as_zip(source: Path, scratch: Path) -> Path:
    """The data as a `.zip`: `source` itself, or `<folder name>.zip` made under `scratch` with the
    folder's files in a top folder of that name, as the official archive has them."""
    if source.is_file():
        return source
    archive = scratch / f"{source.name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(source.iterdir()):
            if path.is_file():
                zipped.write(path, f"{source.name}/{path.name}")
    return archive
