"""Evaluation figures on cases small enough to compute by hand, and the recorded RMSE's honesty."""

from __future__ import annotations

import json
import math
import shutil

import keras
import numpy as np
import pytest

from app.ranking import popularity
from benchmarks import check_bundle
from tests.support.data import random_ratings
from tests.support.models import build_model
from training import evaluate
from training.config import TrainingConfig
from training.dataset import Encoded, Split, encode, seed_split
from training.evaluate import (
    Biases,
    RankingTask,
    _column_order,
    binary_crossentropy,
    dcg,
    evaluate_all,
    format_table,
    mae,
    rank_with,
    ranking_metrics,
    ranking_task,
    rating_metrics,
    rmse,
)
from training.ranking import dense_ease_weights, interactions


def test_rmse_and_mae_by_hand():
    predicted, actual = np.array([1.0, 2.0, 3.0, 4.5]), np.array([1.0, 2.5, 5.0, 4.0])
    # errors 0, -0.5, -2, 0.5: squares 0 + 0.25 + 4 + 0.25 = 4.5; absolutes 0 + 0.5 + 2 + 0.5 = 3
    assert rmse(predicted, actual) == pytest.approx(math.sqrt(4.5 / 4))
    assert mae(predicted, actual) == pytest.approx(3 / 4)
    assert rmse(actual, actual) == 0 and mae(actual, actual) == 0


def test_binary_crossentropy_by_hand_and_like_keras():
    # -(1*log 0.5 + 0) and -(0 + 1*log(1 - 0.9)): (0.693147 + 2.302585) / 2
    scores, targets = np.array([0.5, 0.9]), np.array([1.0, 0.0])
    assert binary_crossentropy(scores, targets) == pytest.approx((math.log(2) + math.log(10)) / 2)
    # Soft target 0.25 at score 0.25: -(0.25 log 0.25 + 0.75 log 0.75)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert binary_crossentropy(np.array([0.25]), np.array([0.25])) == pytest.approx(expected)
    # Scores of exactly 0 or 1 are clipped to 1e-7 as Keras does, so the loss stays finite.
    assert binary_crossentropy(np.array([0.0]), np.array([1.0])) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert binary_crossentropy(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(0, abs=1e-6)

    rng = np.random.default_rng(0)
    scores, targets = rng.uniform(0, 1, 200), rng.integers(0, 10, 200) / 9
    by_keras = keras.losses.BinaryCrossentropy()(targets[:, None], scores[:, None])
    assert binary_crossentropy(scores, targets) == pytest.approx(float(by_keras), rel=1e-5)


def test_rating_metrics_score_stars_and_scaled_targets():
    to_scores = lambda stars: (stars - 0.5) / 4.5  # noqa: E731
    figures = rating_metrics(np.array([5.0, 0.5]), np.array([5.0, 0.5]), to_scores)
    assert figures["rmse"] == 0 and figures["mae"] == 0 and figures["bce"] == pytest.approx(0, abs=1e-6)
    # Predictions beyond the star range are clipped as Keras clips scores: the BCE stays finite.
    above, below = (rating_metrics(np.array([s]), np.array([5.0]), to_scores)["bce"] for s in (6.0, -1.0))
    assert above == pytest.approx(binary_crossentropy(np.array([1.0]), np.array([1.0])))
    assert below == pytest.approx(binary_crossentropy(np.array([0.0]), np.array([1.0])))


def test_dcg_by_hand():
    # Hits at ranks 1 and 3: 1/log2(2) + 1/log2(4) = 1.5; one at rank 2: 1/log2(3).
    np.testing.assert_allclose(dcg(np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])), [1.5, 1 / math.log2(3)])


def test_ranking_metrics_by_hand():
    # k = 3.
    # User A: top [10, 20, 30], relevant {20, 40}: one hit at rank 2.
    #   precision 1/3, recall 1/2, DCG = 1/log2(3), ideal DCG (2 relevant) = 1 + 1/log2(3),
    #   NDCG = 0.6309298 / 1.6309298 = 0.3868528.
    # User B: top [5, 6, -1] (only two candidates; -1 pads), relevant {5}: hit at rank 1.
    #   precision 1/3, recall 1, DCG = 1, ideal DCG = 1, NDCG = 1.
    # Means: precision 1/3, recall 0.75, NDCG 0.6934264.
    top = np.array([[10, 20, 30], [5, 6, -1]])
    relevant = [np.array([20, 40]), np.array([5])]
    figures = ranking_metrics(top, relevant, 3)
    assert figures["precision@3"] == pytest.approx(1 / 3)
    assert figures["recall@3"] == pytest.approx(0.75)
    assert figures["ndcg@3"] == pytest.approx(0.6934264, abs=1e-7)


def test_ranking_metrics_with_more_relevant_movies_than_k():
    # Relevant {1, 2, 3, 4}, k = 2, top [1, 9]: precision 1/2, recall 1/4;
    # ideal DCG counts only k = 2 hits: 1 + 1/log2(3); DCG = 1, NDCG = 1 / 1.6309298 = 0.6131472.
    figures = ranking_metrics(np.array([[1, 9]]), [np.array([1, 2, 3, 4])], 2)
    assert figures == pytest.approx({"precision@2": 0.5, "recall@2": 0.25, "ndcg@2": 0.6131472})
    # A perfect ranking scores 1 everywhere but recall.
    perfect = ranking_metrics(np.array([[3, 4]]), [np.array([4, 3, 2])], 2)
    assert perfect == pytest.approx({"precision@2": 1.0, "recall@2": 2 / 3, "ndcg@2": 1.0})


def test_biases_one_pass_by_hand():
    # Ratings (user, movie, stars): (0, 0, 5), (0, 1, 3), (1, 0, 4); mean 4; damping d = 5.
    # Movies first: movie 0 residuals 1 + 0 over 2 + 5 -> 1/7; movie 1: -1 over 1 + 5 -> -1/6.
    # Then users: user 0 residuals (5 - 4 - 1/7) + (3 - 4 + 1/6) = 6/7 - 5/6 = 1/42, over 2 + 5
    # -> 1/294; user 1: (4 - 4 - 1/7) over 1 + 5 -> -1/42.
    pairs = np.array([[0, 0], [0, 1], [1, 0]])
    stars = np.array([5.0, 3.0, 4.0])
    biases = Biases(pairs, stars, n_users=2, n_movies=2, damping=5.0, passes=1)
    assert biases.mean == 4.0
    np.testing.assert_allclose(biases.movie, [1 / 7, -1 / 6])
    np.testing.assert_allclose(biases.user, [1 / 294, -1 / 42])
    np.testing.assert_allclose(biases.predict(np.array([[1, 1]])), [4 - 1 / 42 - 1 / 6])
    np.testing.assert_allclose(
        biases.score_users(np.array([1, 0])), 4 + biases.user[[1, 0]][:, None] + biases.movie
    )


def test_biases_recover_an_exactly_additive_rating_table():
    # stars = 3 + a_user + b_movie on a complete grid with zero-mean a and b: undamped, the
    # alternating fit finds a and b exactly and predicts every rating.
    a, b = np.array([0.5, -0.5, 1.0, -1.0]), np.array([0.25, -0.75, 0.5])
    users, movies = np.meshgrid(np.arange(4), np.arange(3), indexing="ij")
    pairs = np.stack([users.ravel(), movies.ravel()], axis=1)
    stars = 3 + a[pairs[:, 0]] + b[pairs[:, 1]]
    biases = Biases(pairs, stars, 4, 3, damping=0.0, passes=3)
    np.testing.assert_allclose(biases.user, a, atol=1e-12)
    np.testing.assert_allclose(biases.movie, b, atol=1e-12)
    np.testing.assert_allclose(biases.predict(pairs), stars, atol=1e-12)


def test_the_ranking_task_uses_held_out_ratings_of_four_and_up_against_training_history():
    train = np.array([[0, 0], [0, 1], [1, 2], [2, 0]])
    validation = np.array([[0, 2], [0, 3], [1, 0], [2, 1]])
    validation_stars = np.array([4.0, 3.5, 5.0, 2.0])
    task = ranking_task(train, validation, validation_stars, 3, 4, None, 42)
    assert task.users.tolist() == [0, 1]  # user 2's only held-out rating is below 4
    assert [s.tolist() for s in task.seen] == [[0, 1], [2]]
    assert [r.tolist() for r in task.relevant] == [[2], [0]]
    assert task.most_rated.tolist() == [0, 1, 2, 3]  # by training ratings: 2, 1, 1, 0; ties by row
    sampled = ranking_task(train, validation, validation_stars, 3, 4, 1, 42)
    assert len(sampled.users) == 1 and sampled.users[0] in (0, 1)


def test_ranking_with_a_scorer_through_the_same_code():
    # Scores prefer higher movie rows; user 0 rated movie 3 in training, so 2 comes first.
    scorer = lambda users: np.tile(np.arange(4, dtype=float), (len(users), 1))  # noqa: E731
    task = RankingTask(
        np.array([0, 1]), [np.array([3]), np.array([], int)], [np.array([2]), np.array([0])], np.array([3])
    )
    figures = rank_with(scorer, task, k=2)
    # User 0: top [2, 1], hit at rank 1 -> P 1/2, R 1, NDCG 1.  User 1: top [3, 2], no hit -> 0.
    # Lists [2, 1] and [3, 2]: 3 distinct movies; movie 3, the only "most rated", holds 1 slot of 4.
    expected = {
        "precision@2": 0.25,
        "recall@2": 0.5,
        "ndcg@2": 0.5,
        "distinct@2": 3,
        "most_rated_share@2": 0.25,
    }
    assert figures == pytest.approx(expected)


def test_ranking_without_any_user_gives_no_figures_rather_than_crashing():
    scorer = lambda users: np.zeros((len(users), 4))  # noqa: E731
    figures = rank_with(scorer, RankingTask(np.array([], dtype=int), [], [], np.array([0])), k=10)
    assert figures == {
        "precision@10": None,
        "recall@10": None,
        "ndcg@10": None,
        "distinct@10": None,
        "most_rated_share@10": None,
    }


def test_the_bundle_records_model_and_baseline_figures(tiny_bundle):
    metrics = json.loads((tiny_bundle / "metadata.json").read_text())["metrics"]
    expected = {
        "model",
        "model by rating",
        "EASE (dense)",
        "user+movie biases",
        "global mean",
        "most popular",
    }
    assert set(metrics) == expected
    for name in ("model", "user+movie biases"):
        assert all(metrics[name][c] is not None for c in ("bce", "rmse", "mae", "precision@10", "ndcg@10"))
    for name in expected - {"global mean"}:
        assert all(metrics[name][c] is not None for c in ("ndcg@10", "distinct@10", "most_rated_share@10"))
    assert metrics["most popular"]["most_rated_share@10"] == 1.0
    assert metrics["global mean"]["ndcg@10"] is None and metrics["most popular"]["rmse"] is None


def test_the_recorded_rmse_matches_an_independent_recomputation(tiny_model_dir, tiny_data_dir, capsys):
    argv = ["--bundle", str(tiny_model_dir / "current"), "--data-dir", str(tiny_data_dir)]
    assert check_bundle.main([*argv, "--max-rmse", "5", "--tolerance", "1e-4"]) == 0, capsys.readouterr()
    assert "recomputed rmse" in capsys.readouterr().out
    # The threshold bites.
    assert check_bundle.main([*argv, "--max-rmse", "0.01"]) == 1
    assert "above --max-rmse" in capsys.readouterr().err


def test_the_independent_check_catches_a_wrong_recorded_rmse(tmp_path, tiny_bundle, tiny_data_dir, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    metadata = json.loads((bundle / "metadata.json").read_text())
    metadata["metrics"]["model"]["rmse"] += 0.01
    (bundle / "metadata.json").write_text(json.dumps(metadata))
    argv = ["--bundle", str(bundle), "--data-dir", str(tiny_data_dir), "--max-rmse", "5"]
    assert check_bundle.main(argv) == 1
    assert "differs from the recorded rmse" in capsys.readouterr().err


# --- the whole table, on an untrained model -----------------------------------------------------
# `evaluate_all` is wiring: which figures of which scorer on which part of the split, under which
# name. An untrained model of training's architecture (random weights) scores as well as any for
# that, and takes no training: the expected rows are rebuilt here from the pieces tested above.

COLUMNS = ["bce", "rmse", "mae", "precision@10", "recall@10", "ndcg@10", "distinct@10", "most_rated_share@10"]


@pytest.fixture(scope="module")
def small_run() -> tuple[Encoded, Split, keras.Model]:
    encoded = encode(random_ratings(n_users=30, n_movies=40, n_ratings=700, seed=1))
    return encoded, seed_split(len(encoded.stars)), build_model(2, encoded.n_users, encoded.n_movies, dim=4)


def test_every_row_holds_its_scorer_s_figures_on_the_validation_part(small_run) -> None:
    encoded, split, model = small_run
    config = TrainingConfig(evaluation_users=8, seed=3, ranking_l2=5.0)
    table, notes = evaluate_all(encoded, split.train, split.validation, model, config)

    pairs, stars = encoded.pairs[split.validation], encoded.stars[split.validation]
    train_pairs, train_stars = encoded.pairs[split.train], encoded.stars[split.train]
    n_users, n_movies = encoded.n_users, encoded.n_movies
    to_scores, to_stars = encoded.encoders.to_scores, encoded.encoders.to_stars
    every = np.stack(np.meshgrid(np.arange(n_users), np.arange(n_movies), indexing="ij"), -1).reshape(-1, 2)
    outputs = {
        name: values.reshape(n_users, n_movies) for name, values in model.predict(every, verbose=0).items()
    }
    task = ranking_task(train_pairs, pairs, stars, n_users, n_movies, 8, 3)
    assert len(task.users) == 8  # the sample, not every user with a relevant movie
    biases = Biases(train_pairs, train_stars, n_users, n_movies, damping=5.0, passes=5)  # the defaults
    counts = popularity(train_pairs[:, 1], n_movies).astype(float)
    x = interactions(train_pairs, train_stars, n_users, n_movies, encoded.encoders.rating_max)
    ease = dense_ease_weights(x, 5.0)
    predicted = to_stars(outputs["rating"][pairs[:, 0], pairs[:, 1]])
    expected = {
        "model": {
            **rating_metrics(predicted, stars, to_scores),
            **rank_with(lambda users: outputs["ranking"][users], task),
        },
        "model by rating": rank_with(lambda users: outputs["rating"][users], task),
        "user+movie biases": {
            **rating_metrics(biases.predict(pairs), stars, to_scores),
            **rank_with(biases.score_users, task),
        },
        "global mean": rating_metrics(np.full(len(stars), train_stars.mean()), stars, to_scores),
        "most popular": rank_with(lambda users: np.tile(counts, (len(users), 1)), task),
        "EASE (dense)": rank_with(lambda users: np.asarray(x[users] @ ease), task),
    }
    assert list(table) == list(expected) and notes == []
    for name, row in table.items():
        assert list(row) == COLUMNS, name
        figures = {c: expected[name][c] for c in COLUMNS if c in expected[name]}
        assert {c: row[c] for c in COLUMNS if c not in figures} == dict.fromkeys(set(COLUMNS) - set(figures))
        assert {c: row[c] for c in figures} == pytest.approx(figures, rel=1e-5), name


@pytest.mark.parametrize("limit_over", [0, 1], ids=["at the limit", "one over"])
def test_the_dense_ease_row_is_left_out_above_its_size_limit_with_a_note(
    small_run, monkeypatch: pytest.MonkeyPatch, limit_over: int
) -> None:
    encoded, split, model = small_run
    monkeypatch.setattr(evaluate, "DENSE_EASE_MAX_MOVIES", encoded.n_movies - limit_over)
    config = TrainingConfig(evaluation_users=4, seed=0)
    table, notes = evaluate_all(encoded, split.train, split.validation, model, config)
    assert ("EASE (dense)" in table) == (limit_over == 0)
    expected = (
        f"EASE (dense) skipped: {encoded.n_movies} movies is above {encoded.n_movies - 1}, where its "
        "item-to-item matrix no longer fits in memory comfortably"
    )
    assert notes == ([expected] if limit_over else [])


def test_the_table_prints_fixed_width_with_a_dash_where_a_figure_does_not_apply() -> None:
    metrics = {"model": {"rmse": 0.912345, "ndcg@10": 0.25}, "global mean": {"rmse": 1.0, "ndcg@10": None}}
    assert format_table(metrics).splitlines() == [
        " " * 20 + "rmse".rjust(20) + "ndcg@10".rjust(20),
        "model".ljust(20) + "0.9123".rjust(20) + "0.2500".rjust(20),
        "global mean".ljust(20) + "1.0000".rjust(20) + "-".rjust(20),
    ]


def test_columns_come_rating_first_then_ranking_then_any_other_by_name() -> None:
    shuffled = ["zeta", "ndcg@10", "bce", "alpha", "most_rated_share@10", "rmse"]
    assert sorted(shuffled, key=_column_order) == [
        "bce",
        "rmse",
        "ndcg@10",
        "most_rated_share@10",
        "alpha",
        "zeta",
    ]


def test_blocks_of_users_give_the_figures_of_one_block_and_movie_row_0_counts_as_listed() -> None:
    """Scoring a block of users at a time changes nothing; row 0 is a movie like any other."""
    scorer = lambda users: np.tile(-np.arange(5, dtype=float), (len(users), 1))  # noqa: E731
    relevant = [np.array([0]), np.array([1]), np.array([0, 2])]
    task = RankingTask(np.array([0, 1, 2]), [np.array([], int)] * 3, relevant, np.array([0]))
    figures = rank_with(scorer, task, k=2)
    assert rank_with(scorer, task, k=2, block=1) == figures == rank_with(scorer, task, k=2, block=2)
    # Every list is [0, 1]: 2 distinct movies, movie 0 (the most rated) holds half the slots.
    assert figures["distinct@2"] == 2 and figures["most_rated_share@2"] == 0.5


def test_ranking_metrics_refuse_lists_and_relevant_sets_of_different_users() -> None:
    with pytest.raises(ValueError, match="zip"):
        ranking_metrics(np.array([[1, 2]]), [np.array([1]), np.array([2])], 2)


def test_the_ranking_task_samples_distinct_users_by_its_seed_and_breaks_popularity_ties_by_row() -> None:
    """A sample is a subset, the same for the same seed; the most-rated cut (100 movies) keeps
    the lower rows among equally rated ones, however many there are."""
    n_users, n_movies = 60, 150
    rng = np.random.default_rng(0)
    validation = np.stack([np.arange(n_users), rng.integers(0, n_movies, n_users)], axis=1)
    stars = np.full(n_users, 5.0)
    counts = rng.integers(0, 4, n_movies)  # ratings per movie: ties everywhere, the cut inside one
    movies = np.repeat(np.arange(n_movies), counts)
    train = np.stack([np.arange(len(movies)) % n_users, movies], axis=1)
    sampled = [
        ranking_task(train, validation, stars, n_users, n_movies, 50, seed).users for seed in (1, 1, 2)
    ]
    assert len(set(sampled[0].tolist())) == 50 and sampled[0].tolist() == sorted(sampled[0].tolist())
    assert sampled[0].tolist() == sampled[1].tolist() != sampled[2].tolist()
    task = ranking_task(train, validation, stars, n_users, n_movies, None, 0)
    assert task.users.tolist() == list(range(n_users))
    assert task.most_rated.tolist() == sorted(range(n_movies), key=lambda row: (-counts[row], row))[:100]


def test_biases_of_users_and_movies_without_training_ratings_are_zero() -> None:
    """The last user and movie rows rated nothing in training: no bias, and they still predict."""
    pairs, stars = np.array([[0, 0], [0, 1], [1, 0]]), np.array([5.0, 3.0, 4.0])
    biases = Biases(pairs, stars, n_users=3, n_movies=3)
    assert biases.user[2] == 0 and biases.movie[2] == 0
    np.testing.assert_allclose(biases.predict(np.array([[2, 2]])), [4.0])


def alternating_biases(
    pairs: np.ndarray, stars: np.ndarray, n_users: int, n_movies: int, damping: float, passes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The fit written out rating by rating: each pass, every movie's damped mean residual given
    the users' biases, then every user's given the movies'."""
    mean, user, movie = stars.mean(), np.zeros(n_users), np.zeros(n_movies)
    for _ in range(passes):
        sums, counts = np.zeros(n_movies), np.zeros(n_movies)
        for (u, m), s in zip(pairs, stars, strict=True):
            sums[m], counts[m] = sums[m] + s - mean - user[u], counts[m] + 1
        movie = sums / (counts + damping)
        sums, counts = np.zeros(n_users), np.zeros(n_users)
        for (u, m), s in zip(pairs, stars, strict=True):
            sums[u], counts[u] = sums[u] + s - mean - movie[m], counts[u] + 1
        user = sums / (counts + damping)
    return user, movie


def test_biases_of_several_passes_on_uneven_ratings_and_their_defaults() -> None:
    """Uneven counts (later passes then matter); by default 5 passes damped by 5; no pass at all
    leaves the global mean."""
    rng = np.random.default_rng(2)
    pairs = np.stack([rng.integers(0, 6, 40), rng.integers(0, 5, 40)], axis=1)
    stars = rng.integers(1, 11, 40) / 2
    biases = Biases(pairs, stars, 6, 5, damping=2.0, passes=3)
    user, movie = alternating_biases(pairs, stars, 6, 5, damping=2.0, passes=3)
    np.testing.assert_allclose(biases.user, user, atol=1e-12)
    np.testing.assert_allclose(biases.movie, movie, atol=1e-12)
    default = Biases(pairs, stars, 6, 5)
    user, movie = alternating_biases(pairs, stars, 6, 5, damping=5.0, passes=5)
    np.testing.assert_allclose(default.user, user, atol=1e-12)
    np.testing.assert_allclose(default.movie, movie, atol=1e-12)
    np.testing.assert_allclose(Biases(pairs, stars, 6, 5, passes=0).predict(pairs), stars.mean())
