"""`python -m training`: the command line of the contract, its flags and its exit status."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from training.config import SEED_PRESET, TrainingConfig
from training.schedule import parse_period

HELP = {
    "members": "independently trained models averaged inside the saved model",
    "epochs": "most epochs per member (early stopping may stop sooner)",
    "batch_size": "ratings per gradient step",
    "learning_rate": "Adam learning rate",
    "embedding_dim": "size of the user and movie vectors",
    "l2": "L2 penalty on the whole embedding tables per step (the seed's 1e-6)",
    "activity_l2": "L2 penalty on the vectors each batch uses (per-example); 0 turns it off",
    "ranking_l2": "EASE's L2 penalty for the ranking output, on ratings scaled to stars / 5",
    "ranking_rank": "eigenvectors kept for the ranking output (width of its user and movie tables)",
    "early_stopping_fraction": "tail of the training part that early stopping watches; 0 turns "
    "early stopping off",
    "patience": "epochs without improvement before early stopping",
    "validation_fraction": "last part of the shuffled ratings held out for the reported figures",
    "seed": "random seed of the split, initialisation and sampling",
    "evaluation_users": "at most this many users in the top-10 evaluation (sampled with --seed)",
    "keep": "bundle versions to keep in the model folder, the new one included",
    "verbose": "Keras progress output: auto, 0 (silent), 1 (bars) or 2 (a line per epoch)",
    "devices": "train the rating members under tf.distribute.MirroredStrategy over this many logical "
    "CPU devices (each batch split between them, gradients summed); 1: no strategy. The code path "
    "of GPUs and of several machines (README, Training beyond one machine)",
}


FLAG_TYPES = {"int": int, "float": float, "int | None": int, "int | str": str}


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the recommender on MovieLens ratings and publish a bundle for the server.",
    )
    parse.add_argument(
        "--data-dir",
        help="folder holding ratings.csv and movies.csv, or a MovieLens .zip "
        "(default: $MOVIELENS_DIR, else download ml-latest-small, checksum verified, cached in "
        "$MOVIELENS_CACHE_DIR or ~/.cache/movielens)",
    )
    parse.add_argument(
        "--model-dir",
        type=Path,
        default=Path(os.environ.get("MODEL_DIR", "models")),
        help="where bundles are written and `current` points (default: $MODEL_DIR, else models)",
    )
    parse.add_argument(
        "--preset",
        choices=["default", "seed"],
        default="default",
        help="'seed' sets the seed notebook's configuration (1 model, 5 epochs, batch 64, "
        "Adam 1e-3, no per-example L2, no early stopping); flags given after it still apply "
        "(default: default)",
    )
    parse.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing (exit 0) when the model folder already has a current bundle",
    )
    parse.add_argument(
        "--database-url",
        help="the feedback database whose stored ratings are merged into the data set, a stored "
        "rating replacing the data set's (default: $DATABASE_URL, else $STATE_DIR/feedback.db if it "
        "exists, as the server uses)",
    )
    parse.add_argument(
        "--no-feedback", action="store_true", help="train on the data set alone, ignoring stored ratings"
    )
    parse.add_argument(
        "--every",
        type=parse_period,
        metavar="PERIOD",
        help="retrain on a schedule: train and publish, then sleep until the next run, until SIGTERM; "
        "a failed run is reported in one line and retried at the next period (units s, m, h, d: "
        "30m, 6h, 1d)",
    )
    for field in dataclasses.fields(TrainingConfig):
        kind = FLAG_TYPES[str(field.type)]
        parse.add_argument(
            f"--{field.name.replace('_', '-')}",
            type=kind,
            default=None,
            help=f"{HELP[field.name]} (default: {field.default})",
        )
    return parse


def config_from(args: argparse.Namespace) -> TrainingConfig:
    """Defaults, then the preset, then the flags that were given."""
    chosen = dict(SEED_PRESET) if args.preset == "seed" else {}
    for field in dataclasses.fields(TrainingConfig):
        value = getattr(args, field.name)
        if value is not None:
            chosen[field.name] = value
    if isinstance(chosen.get("verbose"), str) and chosen["verbose"].isdigit():
        chosen["verbose"] = int(chosen["verbose"])
    return TrainingConfig(**chosen)


def main(argv: list[str] | None = None) -> int:
    parse = parser()
    args = parse.parse_args(argv)
    from app.bundle import BundleError
    from app.bundle_store import current_bundle_path

    if args.every and args.if_missing:
        parse.error("--every and --if-missing do not go together")
    if args.if_missing:
        try:
            print(f"bundle present at {current_bundle_path(args.model_dir)}; nothing to do")
            return 0
        except BundleError:
            pass
    try:
        config = config_from(args)
    except ValueError as error:
        parse.error(str(error))  # exit status 2, as for any other bad flag
    try:
        if args.every:
            from training.schedule import run_every

            return run_every(args.every, lambda: train_once(args, config, scheduled=True)[1])
        status, outcome = train_once(args, config)
    except KeyboardInterrupt:
        print("training interrupted: the current bundle is unchanged", file=sys.stderr)
        return 130
    print(outcome, file=sys.stderr if status else sys.stdout)
    return status


def train_once(args: argparse.Namespace, config: TrainingConfig, scheduled: bool = False) -> tuple[int, str]:
    """One run; its exit status and its outcome in one line. Scheduled, no Exception escapes."""
    from app.bundle import BundleError
    from app.bundle_store import CURRENT
    from app.feedback import FeedbackUnavailable
    from training.data import DataError, resolve_source

    expected = (DataError, BundleError, FeedbackUnavailable, OSError, ValueError)
    try:
        from training.feedback import feedback_database_url
        from training.run import run

        database_url = None if args.no_feedback else feedback_database_url(args.database_url)
        folder = run(resolve_source(args.data_dir), args.model_dir, config, database_url)
    except Exception as error:
        if not (scheduled or isinstance(error, expected)):
            raise
        reason = str(error).strip().splitlines()
        return 1, f"training failed: {reason[0] if reason else type(error).__name__}"
    finally:
        if scheduled:  # the next run builds its models afresh: free this run's graphs
            import keras

            keras.backend.clear_session()
    return 0, f"bundle written to {folder} and published as {args.model_dir / CURRENT}"
