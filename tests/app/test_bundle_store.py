"""The model folder: atomic publication, crash safety, abandoned staging folders and pruning.

A reader never sees half a bundle, and a failed or killed run leaves `current` where it was.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.bundle import (
    MANIFEST_FILE,
    REQUIRED_FILES,
    BundleError,
    load_bundle,
    new_version,
    write_bundle_files,
)
from app.bundle_store import (
    CURRENT,
    PRUNING_PREFIX,
    STAGING_PREFIX,
    WRITER_LOCK,
    current_bundle_path,
    folder_stamp,
    point_current,
    prune_versions,
    publish_bundle,
    remove_abandoned_staging,
    version_folders,
)
from tests.support import REPO
from tests.support.bundles import snapshot
from tests.support.training import train

HOW_TO = "python -m training"


def rewrite(loaded, model_dir: Path, keep: int = 3, write_extras=None, **overrides) -> Path:
    """Writes the loaded tiny bundle again as a new version, with parts optionally replaced."""
    parts = {
        "model": loaded.model,
        "encoders": loaded.encoders,
        "metadata": loaded.metadata.model_copy(update={"version": new_version()}),
        "catalogue": loaded.catalogue,
        "ratings": loaded.ratings,
        **overrides,
    }

    def write(folder: Path) -> None:
        write_bundle_files(folder, **parts)
        if write_extras is not None:
            write_extras(folder)

    return publish_bundle(model_dir, parts["metadata"].version, write, keep=keep)


def temporaries(model_dir: Path) -> list[Path]:
    return list(model_dir.glob(f"{STAGING_PREFIX}*"))


def refuse_to_delete(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Every file called `name` cannot be deleted from now on (another owner, a read-only mount:
    what a test running as root cannot arrange with permissions)."""
    unlink = os.unlink

    def refusing_unlink(path, *args, **kwargs) -> None:
        if Path(path).name == name:
            raise PermissionError(13, "Permission denied", str(path))
        unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refusing_unlink)


# --- publication -------------------------------------------------------------------------


def test_a_written_bundle_is_complete_published_and_loadable(tiny_loaded, model_dir_copy):
    old = current_bundle_path(model_dir_copy)
    written = rewrite(tiny_loaded, model_dir_copy)
    assert current_bundle_path(model_dir_copy) == written.resolve()
    assert (model_dir_copy / CURRENT).is_symlink()
    assert os.readlink(model_dir_copy / CURRENT) == written.name  # relative: the folder can move
    assert {p.name for p in written.iterdir()} == {*REQUIRED_FILES, MANIFEST_FILE}
    assert version_folders(model_dir_copy) == sorted([old, written])
    assert not temporaries(model_dir_copy)
    again = load_bundle(current_bundle_path(model_dir_copy))
    pairs = np.array([[0, 0], [3, 5]], dtype=np.int32)
    for name, values in tiny_loaded.model.predict_on_batch(pairs).items():
        np.testing.assert_allclose(again.model.predict_on_batch(pairs)[name], values)


def test_publish_switches_current_and_can_roll_back(tiny_loaded, model_dir_copy):
    old = current_bundle_path(model_dir_copy)
    new = rewrite(tiny_loaded, model_dir_copy)
    point_current(model_dir_copy, old.name)
    assert current_bundle_path(model_dir_copy) == old
    point_current(model_dir_copy, new.name)
    assert current_bundle_path(model_dir_copy) == new.resolve()
    assert not [p for p in model_dir_copy.iterdir() if p.name.startswith(f".{CURRENT}")]


# Resolves `current` as the server does, as fast as it can, until told to stop; prints the misses.
READER = """
import sys
from pathlib import Path
from app.bundle import BundleError
from app.bundle_store import current_bundle_path
folder, reads, misses = Path(sys.argv[1]), 0, 0
print("reading", flush=True)
while not (folder / "stop").exists():
    reads += 1
    try:
        current_bundle_path(folder)
    except BundleError:
        misses += 1
print(reads, misses)
"""


def test_a_reader_never_finds_current_missing_while_it_is_switched(tmp_path):
    """Switching is one rename over the old link: a reader in another process, resolving
    `current` meanwhile, always finds a version (an unlink then a new link would leave a gap)."""
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
    point_current(tmp_path, "v1")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
        for switch in range(3000):
            point_current(tmp_path, f"v{switch % 2 + 1}")
        (tmp_path / "stop").touch()
        out, _ = reader.communicate(timeout=30)
    finally:
        reader.kill()
    reads, misses = map(int, out.split())
    assert reads > 0 and misses == 0, f"{misses} of {reads} reads found no current"


def test_a_missing_current_is_a_bundle_error_that_says_how_to_make_one(tmp_path):
    with pytest.raises(BundleError, match=HOW_TO):
        current_bundle_path(tmp_path)


def test_a_current_pointing_at_a_missing_version_is_a_bundle_error_naming_it(tmp_path: Path) -> None:
    """A version deleted by hand under `current`: the error says which one it was."""
    point_current(tmp_path, "20260101T000000000000Z-1")
    with pytest.raises(
        BundleError, match=r"points at 20260101T000000000000Z-1, which is not there; .*" + HOW_TO
    ):
        current_bundle_path(tmp_path)


def test_a_model_folder_that_cannot_be_read_is_a_bundle_error_with_the_reason(tmp_path: Path) -> None:
    """An OSError the checks do not swallow (here a name too long for the file system) becomes a
    `BundleError` with the system's reason, which the service reports instead of crashing."""
    with pytest.raises(BundleError, match=r"cannot read .*\(File name too long\); .*" + HOW_TO):
        current_bundle_path(tmp_path / ("x" * 300))


# --- interrupted writes -------------------------------------------------------------------


class ModelThatFailsHalfway:
    """Writes part of model.keras, then the disk 'fills up'."""

    def save(self, path: Path) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half a model")
        raise OSError(28, "No space left on device")


def fail_in_extras(folder: Path) -> None:
    (folder / "loss.png").write_bytes(b"\x89PNG half")
    raise RuntimeError("plotting failed")


def interrupt_in_extras(folder: Path) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"model": ModelThatFailsHalfway()}, OSError),
        ({"write_extras": fail_in_extras}, RuntimeError),
        ({"write_extras": interrupt_in_extras}, KeyboardInterrupt),
    ],
    ids=["model.save fails", "extras fail", "Ctrl-C"],
)
def test_a_write_that_fails_midway_leaves_no_trace(tiny_loaded, model_dir_copy, overrides, error):
    before = snapshot(model_dir_copy)
    with pytest.raises(error):
        rewrite(tiny_loaded, model_dir_copy, **overrides)
    assert snapshot(model_dir_copy) == before
    assert not temporaries(model_dir_copy)
    load_bundle(current_bundle_path(model_dir_copy))


# Its own 120 s deadline for catching the run mid-write fails first and says so.
@pytest.mark.timeout(300)
def test_sigkill_while_writing_leaves_current_and_the_next_run_cleans_up(tiny_data_dir, model_dir_copy):
    """`python -m training` killed with SIGKILL once its staging folder has the model in it."""
    old = current_bundle_path(model_dir_copy)
    before = snapshot(model_dir_copy)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "training", "--data-dir", str(tiny_data_dir)]
    command += ["--model-dir", str(model_dir_copy), "--epochs", "1", "--members", "1"]
    command += ["--embedding-dim", "8", "--verbose", "0"]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    staging = None
    deadline = time.monotonic() + 120
    try:
        while process.poll() is None and time.monotonic() < deadline:
            found = [p for p in temporaries(model_dir_copy) if (p / "model.keras").exists()]
            if found:
                process.send_signal(signal.SIGKILL)
                staging = found[0]
                break
            time.sleep(0.002)
    finally:
        if process.poll() is None and staging is None:
            process.kill()
        process.wait(timeout=30)
    assert staging is not None, f"never caught the run mid-write (exit status {process.returncode})"
    assert process.returncode == -signal.SIGKILL

    # Nothing visible changed: same current, same versions, old bundle still loads.
    assert current_bundle_path(model_dir_copy) == old
    assert version_folders(model_dir_copy) == [old]
    assert {
        k: v for k, v in snapshot(model_dir_copy)["files"].items() if not k.startswith(STAGING_PREFIX)
    } == before["files"]
    load_bundle(current_bundle_path(model_dir_copy))
    assert staging.exists()  # abandoned by the dead process

    # The next run removes the abandoned staging folder and publishes normally.
    assert train(tiny_data_dir, model_dir_copy, "--members", "1") == 0
    assert not temporaries(model_dir_copy)
    new = current_bundle_path(model_dir_copy)
    assert new != old and version_folders(model_dir_copy) == [old, new]


def test_only_staging_folders_of_dead_writers_are_removed(tmp_path):
    """A killed writer's lock is gone with it; a live writer's lock keeps its folder."""
    abandoned = tmp_path / f"{STAGING_PREFIX}20260101T000000000000Z-1-abc"
    live = tmp_path / f"{STAGING_PREFIX}20260101T000000000000Z-1-def"
    for folder in (abandoned, live):
        folder.mkdir()
        (folder / "model.keras").write_bytes(b"partial")
    killed = subprocess.Popen(
        [sys.executable, "-c", LOCK_AND_WAIT, str(abandoned / WRITER_LOCK)], stdout=subprocess.PIPE
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_AND_WAIT, str(live / WRITER_LOCK)], stdout=subprocess.PIPE
    )
    try:
        assert killed.stdout.readline() == b"locked\n" and holder.stdout.readline() == b"locked\n"
        killed.kill()
        killed.wait()
        remove_abandoned_staging(tmp_path)
        assert not abandoned.exists()
        assert live.exists()
    finally:
        holder.kill()
        holder.wait()


LOCK_AND_WAIT = """
import fcntl, sys, time
handle = open(sys.argv[1], "wb")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


# --- pruning ------------------------------------------------------------------------------


def test_writing_keeps_the_newest_versions_including_current(tiny_loaded, model_dir_copy):
    first = current_bundle_path(model_dir_copy)
    written = [rewrite(tiny_loaded, model_dir_copy, keep=2) for _ in range(3)]
    assert version_folders(model_dir_copy) == written[-2:]
    assert current_bundle_path(model_dir_copy) == written[-1].resolve()
    assert not first.exists()


def make_versions(model_dir: Path, n: int) -> list[Path]:
    folders = [model_dir / f"2026010{i}T000000000000Z-{100 + i}" for i in range(1, n + 1)]
    for folder in folders:
        folder.mkdir(parents=True)
    return folders


@pytest.mark.parametrize("keep", [1, 2, 3, 5, 8])
def test_pruning_keeps_keep_versions_and_always_current(tmp_path, keep):
    folders = make_versions(tmp_path, 6)
    point_current(tmp_path, folders[1].name)  # rolled back to an old version
    (tmp_path / f"{STAGING_PREFIX}in-progress").mkdir()
    prune_versions(tmp_path, keep=keep)
    kept = version_folders(tmp_path)
    assert folders[1] in kept
    others = [f for f in folders if f != folders[1]]
    assert kept == sorted([folders[1], *others[len(others) - min(keep - 1, len(others)) :]])
    assert len(kept) == min(keep, 6)
    assert (tmp_path / f"{STAGING_PREFIX}in-progress").exists()  # not a version: left to its owner
    assert current_bundle_path(tmp_path) == folders[1]


def test_pruning_without_current_keeps_the_newest(tmp_path):
    folders = make_versions(tmp_path, 4)
    prune_versions(tmp_path, keep=2)
    assert version_folders(tmp_path) == folders[2:]


def test_pruning_killed_midway_leaves_no_visible_partial_version(tmp_path, monkeypatch):
    """A run killed while deleting an old version: the version is gone from sight whole, or is
    still whole; what was half deleted is hidden, and the next pruning removes it."""
    folders = make_versions(tmp_path, 4)
    for folder in folders:
        for name in REQUIRED_FILES:
            (folder / name).write_bytes(b"x")
    point_current(tmp_path, folders[-1].name)

    def killed_after_one_file(path, ignore_errors=False):
        sorted(Path(path).iterdir())[0].unlink()
        raise KeyboardInterrupt  # stands for SIGKILL: nothing after this line runs

    monkeypatch.setattr("app.bundle_store.shutil.rmtree", killed_after_one_file)
    with pytest.raises(KeyboardInterrupt):
        prune_versions(tmp_path, keep=2)
    for version in version_folders(tmp_path):
        assert sorted(p.name for p in version.iterdir()) == sorted(REQUIRED_FILES), version
    monkeypatch.undo()
    prune_versions(tmp_path, keep=2)
    assert version_folders(tmp_path) == folders[2:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CURRENT, *(f.name for f in folders[2:])])


def test_pruning_is_not_stopped_by_a_leftover_it_cannot_delete(tmp_path: Path) -> None:
    """A hidden leftover of an earlier pruning that cannot be removed (here a file where a folder
    was expected) is left for later: publishing a new version must not fail on it."""
    folders = make_versions(tmp_path, 3)
    (tmp_path / f"{PRUNING_PREFIX}stuck").write_bytes(b"not a folder")
    assert prune_versions(tmp_path, keep=1) == folders[:2]
    assert version_folders(tmp_path) == folders[2:]


# --- durability and change detection ---------------------------------------------------------


def test_publishing_fsyncs_every_file_and_both_folders_before_the_rename(tmp_path: Path, monkeypatch) -> None:
    """A published bundle survives a power loss only if its files reach the disk before the
    rename makes them visible: every file (nested ones too) and the staging folder are fsynced
    while still staged, and the model folder once `current` is switched."""
    synced: list[str] = []
    fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    def write(folder: Path) -> None:
        (folder / "model.keras").write_bytes(b"weights")
        (folder / "assets").mkdir()
        (folder / "assets" / "vocabulary.txt").write_text("words")

    monkeypatch.setattr(os, "fsync", recording_fsync)
    final = publish_bundle(tmp_path, "v1", write, keep=3)
    staged = {Path(path) for path in synced if Path(path).name.startswith(STAGING_PREFIX)}
    assert len(staged) == 1, "the staging folder itself"
    [staging] = staged
    files = {str(Path(path).relative_to(staging)) for path in synced if Path(path).is_relative_to(staging)}
    assert files >= {"model.keras", "assets/vocabulary.txt", MANIFEST_FILE}
    assert str(tmp_path) in synced and final == tmp_path / "v1"


def test_a_folder_stamp_changes_with_any_file_s_size_inode_or_time_and_only_then(tmp_path: Path) -> None:
    """The service remembers a refused bundle by its stamp and retries it once fixed in place: a
    file rewritten (size or time), replaced (a new inode) or added changes the stamp; nothing
    else does, and the order the directory lists its files in does not matter."""
    folder = tmp_path / "v1"
    folder.mkdir()
    for name in ("b.json", "a.json", "c.json"):
        (folder / name).write_text("{}")
    when = 1_700_000_000_000_000_000
    for path in folder.iterdir():
        os.utime(path, ns=(when, when))
    stamp = folder_stamp(folder)
    assert folder_stamp(folder) == stamp and stamp[0] == str(folder)
    assert [entry[0] for entry in stamp[1]] == ["a.json", "b.json", "c.json"]

    def changed(how) -> bool:
        before = folder_stamp(folder)
        how(folder / "a.json")
        return folder_stamp(folder) != before

    def resize(path: Path) -> None:
        path.write_text('{"x": 1}')
        os.utime(path, ns=(when, when))

    def touch(path: Path) -> None:
        os.utime(path, ns=(when + 1, when + 1))

    def replace(path: Path) -> None:
        shutil.copy2(path, path.with_name("copy"))
        os.replace(path.with_name("copy"), path)

    assert changed(resize) and changed(touch) and changed(replace)
    assert not changed(lambda path: path.read_text())
    copy = tmp_path / "v2"
    shutil.copytree(folder, copy)
    assert folder_stamp(copy) != folder_stamp(folder), "another folder, another stamp"


def test_pruning_skips_a_version_another_run_removed_and_prunes_the_rest(tmp_path: Path, monkeypatch) -> None:
    """Two runs pruning at once: a version listed, then renamed away by the other run before this
    one gets to it, is skipped, and the older versions after it are still removed."""
    folders = make_versions(tmp_path, 4)
    gone = tmp_path / "20260100T000000000000Z-99"  # listed, then removed by the other run
    monkeypatch.setattr("app.bundle_store.version_folders", lambda model_dir: [gone, *folders])
    prune_versions(tmp_path, keep=2)
    assert [folder.exists() for folder in folders] == [False, False, True, True]


def test_pruning_goes_on_past_a_file_it_cannot_delete(tmp_path: Path, monkeypatch) -> None:
    """A file of an old version that cannot be deleted (another owner, a read-only mount) leaves
    that hidden folder behind for a later pruning; publishing does not fail on it."""
    folders = make_versions(tmp_path, 3)
    (folders[0] / "model.keras").write_bytes(b"weights")
    refuse_to_delete(monkeypatch, "model.keras")
    assert prune_versions(tmp_path, keep=1) == folders[:2]
    assert version_folders(tmp_path) == folders[2:]


def test_a_bundle_is_written_hidden_beside_the_versions_and_published_readable_by_all(tmp_path: Path) -> None:
    """The staging folder is created in the model folder (so the rename is atomic and stays on one
    file system, creating missing parents), is hidden and named for its version (pruning and
    servers ignore it, `remove_abandoned_staging` finds it), and the published folder is
    readable by a server running as another user but writable by its owner only."""
    model_dir = tmp_path / "not" / "yet" / "there"
    seen: list[tuple[Path, list[Path]]] = []

    def write(folder: Path) -> None:
        seen.append((folder, version_folders(model_dir)))
        (folder / "model.keras").write_bytes(b"weights")

    final = publish_bundle(model_dir, "v1", write, keep=3)
    [(staging, visible)] = seen
    assert staging.parent == model_dir and staging.name.startswith(f"{STAGING_PREFIX}v1-")
    assert visible == []
    assert final == model_dir / "v1" and stat.S_IMODE(final.stat().st_mode) == 0o755


def test_a_failed_write_is_reported_even_when_its_leftovers_cannot_be_deleted(
    tmp_path: Path, monkeypatch
) -> None:
    """The caller learns why the write failed; a staging folder that cannot be removed whole must
    not replace that error with its own (the next run removes it)."""

    def write(folder: Path) -> None:
        (folder / "model.keras").write_bytes(b"half a model")
        raise OSError(28, "No space left on device")

    refuse_to_delete(monkeypatch, "model.keras")
    with pytest.raises(OSError, match="No space left on device"):
        publish_bundle(tmp_path, "v1", write, keep=3)
    assert version_folders(tmp_path) == []


def test_cleaning_staging_passes_over_fresh_folders_and_ones_it_cannot_delete(
    tmp_path: Path, monkeypatch
) -> None:
    """A staging folder without its lock file yet (a writer just starting) is left alone, and so is
    one that cannot be deleted whole; neither stops the others being cleaned, in whatever order
    the directory lists them (ten of each kind, interleaved, so that none comes last by luck)."""
    fresh, abandoned = [], []
    for index in range(10):
        fresh.append(tmp_path / f"{STAGING_PREFIX}v{index}-fresh")
        fresh[-1].mkdir()
        abandoned.append(tmp_path / f"{STAGING_PREFIX}v{index}-dead")
        abandoned[-1].mkdir()
        (abandoned[-1] / WRITER_LOCK).write_bytes(b"")  # its writer died: nobody holds the lock
    stuck = abandoned[0] / "model.keras"
    stuck.write_bytes(b"partial")
    refuse_to_delete(monkeypatch, "model.keras")
    remove_abandoned_staging(tmp_path)
    assert all(folder.exists() for folder in fresh)
    assert [folder.exists() for folder in abandoned] == [True] + [False] * 9
