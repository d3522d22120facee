"""The bundle: atomic publication, crash safety, pruning and the reader's checks.

A reader never sees half a bundle and a failed or killed run leaves `current` where it was; a
damaged bundle is refused with a `BundleError` that names the file and how to make a new one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.bundle import (
    FORMAT_VERSION,
    REQUIRED_FILES,
    BundleError,
    load_bundle,
    new_version,
    read_metadata,
    write_bundle_files,
)
from app.bundle_store import (
    CURRENT,
    STAGING_PREFIX,
    WRITER_LOCK,
    current_bundle_path,
    point_current,
    prune_versions,
    publish_bundle,
    remove_abandoned_staging,
    version_folders,
)

REPO = Path(__file__).resolve().parents[1]
HOW_TO = "python -m training"


@pytest.fixture(scope="module")
def loaded(tiny_bundle):
    return load_bundle(tiny_bundle)


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


# --- publication -------------------------------------------------------------------------


def test_a_written_bundle_is_complete_published_and_loadable(loaded, model_dir_copy):
    old = current_bundle_path(model_dir_copy)
    written = rewrite(loaded, model_dir_copy)
    assert current_bundle_path(model_dir_copy) == written.resolve()
    assert (model_dir_copy / CURRENT).is_symlink()
    assert os.readlink(model_dir_copy / CURRENT) == written.name  # relative: the folder can move
    assert {p.name for p in written.iterdir()} == set(REQUIRED_FILES)
    assert version_folders(model_dir_copy) == sorted([old, written])
    assert not temporaries(model_dir_copy)
    again = load_bundle(current_bundle_path(model_dir_copy))
    pairs = np.array([[0, 0], [3, 5]], dtype=np.int32)
    np.testing.assert_allclose(again.model.predict_on_batch(pairs), loaded.model.predict_on_batch(pairs))


def test_the_session_bundle_holds_every_file_of_the_contract(tiny_bundle):
    names = {p.name for p in tiny_bundle.iterdir()}
    assert set(REQUIRED_FILES) | {"loss.png"} == names
    assert (tiny_bundle / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metadata = json.loads((tiny_bundle / "metadata.json").read_text())
    assert metadata["format_version"] == FORMAT_VERSION and metadata["version"] == tiny_bundle.name
    for key in ("created_at", "data", "split", "hyperparameters", "metrics", "history", "libraries"):
        assert key in metadata
    assert read_metadata(tiny_bundle).version == tiny_bundle.name


def test_publish_switches_current_and_can_roll_back(loaded, model_dir_copy):
    old = current_bundle_path(model_dir_copy)
    new = rewrite(loaded, model_dir_copy)
    point_current(model_dir_copy, old.name)
    assert current_bundle_path(model_dir_copy) == old
    point_current(model_dir_copy, new.name)
    assert current_bundle_path(model_dir_copy) == new.resolve()
    assert not [p for p in model_dir_copy.iterdir() if p.name.startswith(f".{CURRENT}")]


def test_a_missing_current_is_a_bundle_error_that_says_how_to_make_one(tmp_path):
    with pytest.raises(BundleError, match=HOW_TO):
        current_bundle_path(tmp_path)


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
def test_a_write_that_fails_midway_leaves_no_trace(loaded, model_dir_copy, snapshot, overrides, error):
    before = snapshot(model_dir_copy)
    with pytest.raises(error):
        rewrite(loaded, model_dir_copy, **overrides)
    assert snapshot(model_dir_copy) == before
    assert not temporaries(model_dir_copy)
    load_bundle(current_bundle_path(model_dir_copy))


def test_a_training_run_that_fails_while_writing_exits_1_and_keeps_current(
    monkeypatch, tiny_data_dir, model_dir_copy, snapshot, train, capsys
):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("training.run.plot_loss", disk_full)
    before = snapshot(model_dir_copy)
    assert train(tiny_data_dir, model_dir_copy, "--members", "1") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("training failed:") and "No space left" in err and "\n" not in err
    assert snapshot(model_dir_copy) == before


def test_an_interrupted_training_run_exits_130_and_says_current_is_unchanged(
    monkeypatch, model_dir_copy, capsys
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("training.run.run", interrupted)
    from training.cli import main

    assert main(["--data-dir", str(model_dir_copy), "--model-dir", str(model_dir_copy)]) == 130
    assert "current bundle is unchanged" in capsys.readouterr().err


def test_sigkill_while_writing_leaves_current_and_the_next_run_cleans_up(
    tiny_data_dir, model_dir_copy, snapshot, train
):
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


def test_writing_keeps_the_newest_versions_including_current(loaded, model_dir_copy):
    first = current_bundle_path(model_dir_copy)
    written = [rewrite(loaded, model_dir_copy, keep=2) for _ in range(3)]
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


# --- load_bundle refuses damaged bundles ------------------------------------------------------


@pytest.fixture
def bundle_copy(tmp_path, tiny_bundle) -> Path:
    copy = tmp_path / tiny_bundle.name
    shutil.copytree(tiny_bundle, copy)
    return copy


def expect_refusal(path: Path, names: str) -> str:
    with pytest.raises(BundleError) as caught:
        load_bundle(path)
    message = str(caught.value)
    assert names in message, message
    assert HOW_TO in message, message
    return message


def test_a_missing_folder_is_refused(tmp_path):
    expect_refusal(tmp_path / "nowhere", "nowhere")


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_a_missing_file_is_refused(bundle_copy, name):
    (bundle_copy / name).unlink()
    assert "is missing" in expect_refusal(bundle_copy, name)


@pytest.mark.parametrize("name", ["metadata.json", "encoders.json", "movies.json"])
@pytest.mark.parametrize("content", ["{not json", "", '{"users": "nope"}', "[]"])
def test_corrupt_json_is_refused(bundle_copy, name, content):
    (bundle_copy / name).write_text(content)
    expect_refusal(bundle_copy, name)


def test_a_newer_format_version_is_refused(bundle_copy):
    metadata = json.loads((bundle_copy / "metadata.json").read_text())
    metadata["format_version"] = FORMAT_VERSION + 1
    (bundle_copy / "metadata.json").write_text(json.dumps(metadata))
    assert "format_version" in expect_refusal(bundle_copy, "metadata.json")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_model_is_refused(bundle_copy, damage):
    path = bundle_copy / "model.keras"
    data = path.read_bytes()
    path.write_bytes(
        {"garbage": b"\x00not a keras file" * 100, "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    expect_refusal(bundle_copy, "model.keras")


def test_a_model_smaller_than_the_encoders_is_refused(bundle_copy):
    """Encoders listing one user more than the model has rows: the probe of the last row fails."""
    encoders = json.loads((bundle_copy / "encoders.json").read_text())
    encoders["users"].append(max(encoders["users"]) + 1)
    (bundle_copy / "encoders.json").write_text(json.dumps(encoders))
    with np.load(bundle_copy / "ratings.npz") as stored:
        arrays = dict(stored)
    arrays["indptr"] = np.append(arrays["indptr"], arrays["indptr"][-1])
    np.savez(bundle_copy / "ratings.npz", **arrays)
    expect_refusal(bundle_copy, "model.keras")


def damage_ratings(path: Path, how: str) -> None:
    with np.load(path) as stored:
        arrays = dict(stored)
    if how == "short indptr":
        arrays["indptr"] = arrays["indptr"][:-1]
    elif how == "movie row out of range":
        arrays["movies"][0] = 10**6
    elif how == "negative movie row":
        arrays["movies"][-1] = -1
    elif how == "counts disagree":
        arrays["ratings"] = arrays["ratings"][:-1]
    elif how == "decreasing indptr":
        arrays["indptr"][1] = arrays["indptr"][2] + 1
    elif how == "array missing":
        del arrays["indptr"]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "how",
    [
        "short indptr",
        "movie row out of range",
        "negative movie row",
        "counts disagree",
        "decreasing indptr",
        "array missing",
    ],
)
def test_inconsistent_ratings_are_refused(bundle_copy, how):
    damage_ratings(bundle_copy / "ratings.npz", how)
    expect_refusal(bundle_copy, "ratings.npz")


def test_unreadable_ratings_are_refused(bundle_copy):
    (bundle_copy / "ratings.npz").write_bytes(b"not an npz")
    expect_refusal(bundle_copy, "ratings.npz")


def test_a_catalogue_that_misses_movies_is_refused(bundle_copy):
    catalogue = json.loads((bundle_copy / "movies.json").read_text())
    catalogue["titles"].pop()
    catalogue["genres"].pop()
    (bundle_copy / "movies.json").write_text(json.dumps(catalogue))
    expect_refusal(bundle_copy, "movies.json")


def test_an_intact_copy_loads(bundle_copy, tiny_bundle):
    bundle = load_bundle(bundle_copy)
    assert bundle.version == tiny_bundle.name
    assert len(bundle.catalogue.titles) == len(bundle.encoders.movies)
    assert bundle.ratings.indptr[-1] == len(bundle.ratings.movies)
