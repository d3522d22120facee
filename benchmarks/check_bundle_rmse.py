"""Recomputes a bundle's validation RMSE from scratch and compares it with the recorded one.

An independent check of training's reported figure: it uses none of the project's code, only the
bundle's files as the contract describes them (`model.keras`, `encoders.json`, `metadata.json`)
and the raw MovieLens ratings. It redoes the seed notebook's split itself (pandas
`df.sample(frac=1, random_state=seed)`, first part train, the rest validation), scores the
validation pairs with `model.predict`, converts scores to stars and prints both RMSEs.

    python benchmarks/check_bundle_rmse.py --bundle models/current --data-dir DIR_OR_ZIP

Exit status 0 when the two agree within --tolerance and the RMSE is at most --max-rmse, else 1
(2 for unusable arguments or files).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd


def read_ratings(source: Path) -> pd.DataFrame:
    """ratings.csv in file order, from a folder or a MovieLens .zip (read in place)."""
    columns = ["userId", "movieId", "rating"]
    if source.is_dir():
        return pd.read_csv(source / "ratings.csv", usecols=columns)
    with zipfile.ZipFile(source) as archive:
        members = [n for n in archive.namelist() if n == "ratings.csv" or n.endswith("/ratings.csv")]
        if not members:
            raise FileNotFoundError(f"{source} holds no ratings.csv")
        with archive.open(min(members, key=len)) as handle:
            return pd.read_csv(handle, usecols=columns)


def validation_rmse(bundle: Path, ratings: pd.DataFrame, batch_size: int) -> tuple[float, dict, int]:
    """RMSE in stars on the validation part; also the metadata and the validation size."""
    metadata = json.loads((bundle / "metadata.json").read_text())
    encoders = json.loads((bundle / "encoders.json").read_text())
    split = metadata.get("split", {})
    seed = int(split.get("seed", 42))
    validation_fraction = float(split.get("validation_fraction", 0.1))

    shuffled = ratings.sample(frac=1, random_state=seed)
    n_train = int((1 - validation_fraction) * len(shuffled))
    validation = shuffled.iloc[n_train:]

    user_row = {user: row for row, user in enumerate(encoders["users"])}
    movie_row = {movie: row for row, movie in enumerate(encoders["movies"])}
    users = validation["userId"].map(user_row)
    movies = validation["movieId"].map(movie_row)
    if users.isna().any() or movies.isna().any():
        raise ValueError("the data has ids that encoders.json does not know: not the bundle's data set")
    pairs = np.stack([users.to_numpy(), movies.to_numpy()], axis=1).astype(np.int32)

    model = keras.saving.load_model(bundle / "model.keras", safe_mode=True)
    scores = model.predict(pairs, batch_size=batch_size, verbose=0).reshape(-1).astype(np.float64)
    low, high = float(encoders["rating_min"]), float(encoders["rating_max"])
    stars = low + scores * (high - low)
    actual = validation["rating"].to_numpy(np.float64)
    return float(np.sqrt(np.mean((stars - actual) ** 2))), metadata, len(validation)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/current"), help="bundle folder")
    parser.add_argument("--data-dir", type=Path, required=True, help="MovieLens folder or .zip")
    parser.add_argument("--max-rmse", type=float, default=0.85, help="fail above this RMSE (stars)")
    parser.add_argument(
        "--tolerance", type=float, default=0.005, help="fail when it differs from the recorded RMSE by more"
    )
    parser.add_argument("--batch-size", type=int, default=8192, help="pairs per model.predict batch")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        ratings = read_ratings(args.data_dir)
        rmse, metadata, n_validation = validation_rmse(args.bundle.resolve(), ratings, args.batch_size)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        print(f"check failed: {error}", file=sys.stderr)
        return 2
    recorded = metadata.get("metrics", {}).get("model", {}).get("rmse")

    print(f"bundle:           {args.bundle} (version {metadata.get('version')})")
    print(f"data:             {args.data_dir} ({len(ratings)} ratings, {n_validation} in validation)")
    print(f"recomputed rmse:  {rmse:.6f}")
    print("recorded rmse:    " + ("missing" if recorded is None else f"{recorded:.6f}"))
    problems = []
    if recorded is None:
        problems.append("metadata.json records no metrics.model.rmse")
    elif abs(rmse - recorded) > args.tolerance:
        problems.append(f"differs from the recorded rmse by {abs(rmse - recorded):.6f} > {args.tolerance}")
    else:
        print(f"difference:       {abs(rmse - recorded):.6f} (tolerance {args.tolerance})")
    if rmse > args.max_rmse:
        problems.append(f"rmse {rmse:.6f} is above --max-rmse {args.max_rmse}")
    print(f"took {time.perf_counter() - started:.1f} s")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if not problems:
        print(f"OK: rmse {rmse:.4f} <= {args.max_rmse} and matches the recorded figure")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
