"""`python -m training`'s flags (documented, defaulted as documented, checked) and exit statuses."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from tests.support import REPO
from tests.support.bundles import snapshot
from training.cli import HELP, config_from, main, parser
from training.config import SEED_PRESET, TrainingConfig

FIELDS = dataclasses.fields(TrainingConfig)


def flag(field: dataclasses.Field) -> str:
    return f"--{field.name.replace('_', '-')}"


def help_text() -> str:
    """`--help` as a real command prints it, on lines wide enough not to wrap, spaces collapsed."""
    finished = subprocess.run(
        [sys.executable, "-m", "training", "--help"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "2000"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 0, finished.stderr
    return " ".join(finished.stdout.split())


def test_help_documents_every_flag_with_its_real_default():
    text = help_text()
    for field in FIELDS:
        assert flag(field) in text, f"{flag(field)} is not in --help"
        described = " ".join(HELP[field.name].split())
        assert f"{flag(field)} {field.name.upper()} {described} (default: {field.default})" in text
    for other in ("--data-dir", "--model-dir", "--preset", "--if-missing", "MOVIELENS_DIR", "MODEL_DIR"):
        assert other in text
    # argparse's own "(default: None)" would contradict the documented defaults.
    assert "(default: None)" not in text


def test_every_config_field_has_a_flag_and_help():
    actions = {action.dest for action in parser()._actions}
    assert {field.name for field in FIELDS} <= actions
    assert set(HELP) == {field.name for field in FIELDS}


def test_no_flags_means_the_dataclass_defaults():
    assert config_from(parser().parse_args([])) == TrainingConfig()


def test_the_seed_preset_then_flags_given_after_it():
    config = config_from(parser().parse_args(["--preset", "seed", "--epochs", "2", "--verbose", "0"]))
    for name, value in SEED_PRESET.items():
        if name != "epochs":
            assert getattr(config, name) == value
    assert config.epochs == 2 and config.verbose == 0 and config.embedding_dim == 50


def test_flags_reach_the_config_with_their_types():
    argv = ["--members", "2", "--learning-rate", "0.01", "--evaluation-users", "50", "--verbose", "auto"]
    config = config_from(parser().parse_args(argv))
    assert (config.members, config.learning_rate, config.evaluation_users, config.verbose) == (
        2,
        0.01,
        50,
        "auto",
    )


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (["--members", "0"], "--members"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--embedding-dim", "-3"], "--embedding-dim"),
        (["--l2=-1e-6"], "--l2"),
        (["--early-stopping-fraction", "1"], "--early-stopping-fraction"),
        (["--validation-fraction", "0"], "--validation-fraction"),
        (["--validation-fraction", "1.5"], "--validation-fraction"),
        (["--seed", "-1"], "--seed"),
        (["--evaluation-users", "0"], "--evaluation-users"),
        (["--keep", "0"], "--keep"),
        (["--verbose", "7"], "--verbose"),
        (["--epochs", "many"], "--epochs"),
    ],
)
def test_out_of_range_flags_are_refused_before_any_work(tmp_path, capsys, given, named):
    with pytest.raises(SystemExit) as exited:
        main(["--data-dir", str(tmp_path / "absent"), "--model-dir", str(tmp_path / "models"), *given])
    assert exited.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("python -m training: error:") and named in last
    assert not (tmp_path / "models").exists()


def test_if_missing_does_nothing_when_a_bundle_exists(model_dir_copy, capsys):
    before = snapshot(model_dir_copy)
    assert main(["--if-missing", "--model-dir", str(model_dir_copy), "--data-dir", "/nonexistent"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert snapshot(model_dir_copy) == before


def test_if_missing_trains_when_there_is_no_bundle(tmp_path, capsys):
    # It goes on to training, which fails here on the missing data.
    assert main(["--if-missing", "--model-dir", str(tmp_path), "--data-dir", str(tmp_path / "absent")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_an_interrupted_training_run_exits_130_and_says_current_is_unchanged(
    monkeypatch, model_dir_copy, capsys
):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("training.run.run", interrupted)

    assert main(["--data-dir", str(model_dir_copy), "--model-dir", str(model_dir_copy)]) == 130
    assert "current bundle is unchanged" in capsys.readouterr().err
