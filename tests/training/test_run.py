"""One training run, data to published bundle: what the bundle holds, and a run that fails."""

from __future__ import annotations

import json

import pandas as pd

from app.bundle import FORMAT_VERSION, MANIFEST_FILE, REQUIRED_FILES, read_metadata
from tests.support.bundles import snapshot
from tests.support.training import train


def test_the_session_bundle_holds_every_file_of_the_contract(tiny_bundle):
    names = {p.name for p in tiny_bundle.iterdir()}
    assert set(REQUIRED_FILES) | {"loss.png", MANIFEST_FILE} == names
    assert (tiny_bundle / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metadata = json.loads((tiny_bundle / "metadata.json").read_text())
    assert metadata["format_version"] == FORMAT_VERSION and metadata["version"] == tiny_bundle.name
    for key in ("created_at", "data", "split", "hyperparameters", "metrics", "history", "libraries"):
        assert key in metadata
    assert read_metadata(tiny_bundle).version == tiny_bundle.name


def test_the_bundle_catalogue_follows_the_encoders(tiny_loaded, tiny_data_dir):
    bundle = tiny_loaded
    movies = pd.read_csv(tiny_data_dir / "movies.csv").set_index("movieId")
    for row in (0, len(bundle.encoders.movies) // 2, len(bundle.encoders.movies) - 1):
        movie = movies.loc[bundle.encoders.movies[row]]
        assert bundle.catalogue.titles[row] == movie["title"]
        expected = [] if movie["genres"] == "(no genres listed)" else movie["genres"].split("|")
        assert bundle.catalogue.genres[row] == expected


def test_a_training_run_that_fails_while_writing_exits_1_and_keeps_current(
    monkeypatch, tiny_data_dir, model_dir_copy, capsys
):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("training.run.plot_loss", disk_full)
    before = snapshot(model_dir_copy)
    assert train(tiny_data_dir, model_dir_copy, "--members", "1") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("training failed:") and "No space left" in err and "\n" not in err
    assert snapshot(model_dir_copy) == before
