"""The model folder: bundle versions side by side, `current` pointing at one, atomic publishing.

A bundle's files are written into a hidden staging folder, which is renamed to its version name
only once complete, and only then is `current` (a relative symlink) switched by replacing it in
one `os.replace`. A reader therefore never sees half a bundle, and a run that fails or is killed
at any moment leaves `current` pointing where it did. What goes inside a version folder is
`app.bundle`'s business, not this module's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from app.bundle import HOW_TO_MAKE_ONE, BundleError, write_manifest

CURRENT = "current"
STAGING_PREFIX = ".incomplete-"
PRUNING_PREFIX = ".pruning-"
WRITER_LOCK = ".writer.lock"


def publish_bundle(model_dir: Path, version: str, write: Callable[[Path], None], keep: int) -> Path:
    """Has `write` fill a staging folder, renames it to `version`, points `current` at it, prunes.

    The manifest (`app.bundle.write_manifest`) is written once `write` is done, so it covers every
    file. Everything is fsynced before the rename, so a published bundle survives a power loss.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(model_dir)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{version}-", dir=model_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; servers may run as another user
    try:
        with _writer_lock(staging):
            write(staging)
            write_manifest(staging)
            (staging / WRITER_LOCK).unlink()  # still locked through the open handle until renamed
            _fsync_tree(staging)
            final = model_dir / version
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    point_current(model_dir, final.name)
    prune_versions(model_dir, keep=keep)
    return final


def point_current(model_dir: Path, version: str) -> None:
    """Points `model_dir/current` at a version folder atomically (symlink swapped by rename)."""
    link = model_dir / f".{CURRENT}.{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(version, target_is_directory=True)
    os.replace(link, model_dir / CURRENT)
    _fsync_dir(model_dir)


def current_bundle_path(model_dir: Path) -> Path:
    """The version folder that `current` points at, resolved once so a swap mid-load is harmless.

    Raises `BundleError`, with the reason, when there is none or it cannot be read.
    """
    link = model_dir / CURRENT
    try:
        if link.is_symlink() and not link.exists():
            raise BundleError(f"{link} points at {os.readlink(link)}, which is not there; {HOW_TO_MAKE_ONE}")
        if not link.exists():
            raise BundleError(f"no bundle at {link}: {HOW_TO_MAKE_ONE}")
        return link.resolve()
    except OSError as error:
        raise BundleError(f"cannot read {link} ({error.strerror or error}); {HOW_TO_MAKE_ONE}") from error


def folder_stamp(folder: Path) -> tuple[str, tuple[tuple[str, int, int, int], ...]]:
    """What a version folder holds, cheaply: each file's name, size, inode and modification time.

    A refused bundle is remembered by its stamp, not its name: fixed in place, it is tried again.
    Raises OSError if the folder cannot be read.
    """
    entries = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        status = entry.stat()
        entries.append((entry.name, status.st_size, status.st_ino, status.st_mtime_ns))
    return str(folder), tuple(entries)


def version_folders(model_dir: Path) -> list[Path]:
    """Published version folders, oldest first."""
    if not model_dir.is_dir():
        return []
    found = [
        p for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    ]
    return sorted(found)  # one parent: the paths sort by name, which sorts by creation time


def prune_versions(model_dir: Path, keep: int) -> list[Path]:
    """Removes all but the newest `keep` versions; never the one `current` points at.

    Each one is first renamed to a hidden name (one atomic step), then deleted: a run killed
    midway leaves a hidden folder, which the next pruning deletes, never a visible version with
    files missing.
    """
    for leftover in model_dir.glob(f"{PRUNING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    current = (model_dir / CURRENT).resolve() if (model_dir / CURRENT).exists() else None
    removable = [p for p in version_folders(model_dir) if p.resolve() != current]
    kept_besides_current = max(keep - (1 if current else 0), 0)
    doomed = removable[: max(len(removable) - kept_besides_current, 0)]
    for path in doomed:
        hidden = model_dir / f"{PRUNING_PREFIX}{path.name}"
        try:
            path.rename(hidden)
        except FileNotFoundError:
            continue  # pruned by another run meanwhile
        shutil.rmtree(hidden, ignore_errors=True)
    return doomed


def remove_abandoned_staging(model_dir: Path) -> None:
    """Deletes the staging folders of runs that died mid-write (SIGKILL, power loss).

    A writer holds an exclusive lock on its staging folder's lock file for as long as it writes;
    the kernel drops the lock when the process dies, however it dies. A folder whose lock can be
    taken is therefore abandoned. (Process ids would not do: in containers every run is pid 1.)
    """
    for path in model_dir.glob(f"{STAGING_PREFIX}*"):
        try:
            handle = open(path / WRITER_LOCK, "rb")  # noqa: SIM115 - held while deciding
        except OSError:
            continue  # just created, or renamed away: not ours to judge
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _writer_lock(staging: Path) -> Iterator[None]:
    """Marks a staging folder as being written, until the block ends or the process dies."""
    with open(staging / WRITER_LOCK, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
