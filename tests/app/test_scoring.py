"""Scoring a user against the whole catalogue: the same numbers as the saved model on every pair."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from app import scoring
from app.bundle import (
    MEMBER_ROLES,
    RANKING_MOVIE_LAYER,
    RANKING_OUTPUT,
    RANKING_SCALE_LAYER,
    RANKING_USER_LAYER,
    RATING_OUTPUT,
    member_layer_name,
)
from app.scoring import MAX_K, SHORT_LIST, Scorer, Tables, UserVectors, padded_size
from tests.support.models import build_model, build_rating_only_model

TOLERANCE = 1e-6


def test_whole_catalogue_scores_equal_predict_on_every_pair(tiny_bundle):
    """Training's ranking figures and the server both use the derived catalogue model."""
    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    encoders = json.loads((tiny_bundle / "encoders.json").read_text())
    n_users, n_movies = len(encoders["users"]), len(encoders["movies"])
    users = np.array([0, n_users - 1, n_users // 2], dtype=np.int32)
    scores = Scorer(model).score_users(users)
    assert scores.rating.shape == scores.ranking.shape == (3, n_movies)
    for row, user in enumerate(users):
        pairs = np.stack([np.full(n_movies, user), np.arange(n_movies)], axis=1).astype(np.int32)
        saved = model.predict(pairs, verbose=0)
        np.testing.assert_allclose(scores.rating[row], saved[RATING_OUTPUT][:, 0], atol=TOLERANCE)
        np.testing.assert_allclose(
            scores.ranking[row], saved[RANKING_OUTPUT][:, 0], rtol=1e-5, atol=TOLERANCE
        )


def test_every_model_call_is_padded_to_a_power_of_two_and_cut_back(tiny_bundle, monkeypatch):
    """Few input shapes per model: TensorFlow's per-shape state would otherwise pile up per swap."""
    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    scorer = Scorer(model)
    sizes: list[int] = []
    for derived in (model, scorer.all_movies, *scorer.top_movies.values()):
        call = derived.predict_on_batch

        def recording(inputs, call=call):
            sizes.append(len(keras.tree.flatten(inputs)[0]))
            return call(inputs)

        monkeypatch.setattr(derived, "predict_on_batch", recording)
    pairs = np.array([[0, 0], [1, 2], [2, 1], [0, 3], [1, 1]], dtype=np.int32)
    scores = scorer.score_pairs(pairs)
    saved = model.predict(pairs, verbose=0)
    np.testing.assert_allclose(scores.rating, saved[RATING_OUTPUT][:, 0], atol=TOLERANCE)
    users = np.array([2, 0, 1], dtype=np.int32)
    assert scorer.score_users(users).rating.shape[0] == 3
    top = scorer.top_by_ranking(users, None, [np.zeros(0, np.int32)] * 3)
    assert top.movies.shape[0] == 3
    assert sizes == [8, 4, 4]


def test_a_short_list_is_the_start_of_the_long_one_and_holds_k(tiny_bundle):
    """Batches asking for few movies rank them with a shorter top-k model: the same movies and
    scores as the longest list's first k, and never fewer than asked for."""
    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    scorer = Scorer(model, list_lengths=(2, 5))
    longest_list = min(MAX_K, scorer.n_movies)
    assert list(scorer.top_movies) == [2, 5, longest_list]
    users = np.array([0, 1, 2], dtype=np.int32)
    seen = [np.zeros(0, np.int32), np.array([0, 3], np.int32), np.arange(1, 6, dtype=np.int32)]
    longest = scorer.top_by_ranking(users, None, seen, longest_list)
    assert longest.movies.shape == (3, longest_list)
    for k in range(1, longest_list + 1):
        top = scorer.top_by_ranking(users, None, seen, k)
        width = top.movies.shape[1]
        assert width == min(length for length in scorer.top_movies if length >= k)
        np.testing.assert_array_equal(top.movies, longest.movies[:, :width])
        np.testing.assert_allclose(top.ranking, longest.ranking[:, :width], atol=TOLERANCE)
        np.testing.assert_allclose(top.rating, longest.rating[:, :width], atol=TOLERANCE)


# --- any model shape, against numpy on the model's own tables ---------------------------------
# Untrained models of training's architecture (random weights, built in a second): one or two
# members, with ranking tables or (format 1) without. Sizes that are neither powers of two nor
# any table's width, so a row count, a width and a padded size cannot stand in for each other.

N_USERS, N_MOVIES, DIM, RANK = 6, 9, 3, 2
SHAPES = [(1, True), (2, True), (2, False)]
SHAPE_IDS = ["one member", "two members", "two members, no ranking tables"]


def model_of(members: int, ranking: bool, n_movies: int = N_MOVIES) -> keras.Model:
    if ranking:
        return build_model(members, N_USERS, n_movies, dim=DIM, rank=RANK)
    return build_rating_only_model(members, N_USERS, n_movies, dim=DIM)


def table(model: keras.Model, name: str) -> np.ndarray:
    return np.asarray(model.get_layer(name).embeddings, np.float64)


def numpy_scores(
    model: keras.Model, members: int, users: np.ndarray, vectors: UserVectors | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`rating` and `ranking` of `users` against every movie, by numpy from the model's tables:
    each user's own rows, or `vectors` where `vectors.given`."""
    given = np.zeros(len(users), bool) if vectors is None else vectors.given
    total = np.zeros((len(users), table(model, "member0_movie_bias").shape[0]))
    for member in range(members):
        name = lambda role, m=member: member_layer_name(m, role)  # noqa: E731
        own = np.concatenate([table(model, name("user_embedding")), table(model, name("user_bias"))], axis=1)
        rows = (
            own[users] if vectors is None else np.where(given[:, None], vectors.rating[:, member], own[users])
        )
        logits = rows[:, :-1] @ table(model, name("movie_embedding")).T + rows[:, -1:]
        total += 1 / (1 + np.exp(-(logits + table(model, name("movie_bias")).T)))
    rating = total / members
    if RANKING_USER_LAYER not in {layer.name for layer in model.layers}:
        return rating, rating
    own = table(model, RANKING_USER_LAYER)[users]
    rows = own if vectors is None else np.where(given[:, None], vectors.ranking, own)
    ranking = rows @ table(model, RANKING_MOVIE_LAYER).T * table(model, RANKING_SCALE_LAYER).T
    return rating, ranking


def some_vectors(scorer: Scorer, given: list[bool], seed: int = 7) -> UserVectors:
    """Random stand-in vectors for a batch, used where `given`."""
    rng = np.random.default_rng(seed)
    n = len(given)
    return UserVectors(
        rng.normal(size=(n, scorer.members, scorer.dim + 1)).astype(np.float32),
        rng.normal(size=(n, scorer.rank)).astype(np.float32),
        np.array(given),
    )


@pytest.mark.parametrize(("members", "ranking"), SHAPES, ids=SHAPE_IDS)
def test_a_batch_of_users_is_scored_against_every_movie_with_its_own_rows_or_given_vectors(
    members: int, ranking: bool
) -> None:
    model = model_of(members, ranking)
    scorer = Scorer(model)
    users = np.array([5, 0, 3])
    for vectors in (None, some_vectors(scorer, [True, False, True])):
        scores = scorer.score_users(users, vectors)
        rating, ranked = numpy_scores(model, members, users, vectors)
        np.testing.assert_allclose(scores.rating, rating, rtol=1e-5, atol=TOLERANCE)
        np.testing.assert_allclose(scores.ranking, ranked, rtol=1e-5, atol=TOLERANCE)


@pytest.mark.parametrize(("members", "ranking"), SHAPES, ids=SHAPE_IDS)
def test_pairs_are_scored_by_the_saved_model_in_chunks(
    members: int, ranking: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of `PAIRS_PER_CALL` (made 4 here, for 11 pairs: the last chunk of 3 padded to 4)
    give what one call gives; a model with one output gives it as both. The model gets int32 rows
    whatever the caller's integers, padding included: another dtype would have TensorFlow trace
    the call again."""
    model = model_of(members, ranking)
    call, dtypes = model.predict_on_batch, []
    monkeypatch.setattr(model, "predict_on_batch", lambda pairs: dtypes.append(pairs.dtype) or call(pairs))
    pairs = np.stack([np.arange(11) % N_USERS, (np.arange(11) * 7) % N_MOVIES], axis=1)
    rating, ranked = numpy_scores(model, members, np.arange(N_USERS))
    monkeypatch.setattr(scoring, "PAIRS_PER_CALL", 4)
    scores = Scorer(model).score_pairs(pairs)
    np.testing.assert_allclose(scores.rating, rating[pairs[:, 0], pairs[:, 1]], rtol=1e-5, atol=TOLERANCE)
    np.testing.assert_allclose(scores.ranking, ranked[pairs[:, 0], pairs[:, 1]], rtol=1e-5, atol=TOLERANCE)
    empty = Scorer(model).score_pairs(np.zeros((0, 2), np.int64))
    assert empty.rating.shape == empty.ranking.shape == (0,)
    assert empty.rating.dtype == empty.ranking.dtype == np.float32
    assert set(dtypes) == {np.dtype(np.int32)}


def test_the_best_unseen_movies_by_ranking_come_with_both_outputs_and_pad_with_minus_one() -> None:
    """Seen movies are never listed, the rest come best first by `ranking`; a user who has seen
    every movie gets only -1 (and -inf), one who has seen some gets -1 after the unseen."""
    model = model_of(2, True)
    scorer = Scorer(model)
    users = np.array([4, 1, 2])
    vectors = some_vectors(scorer, [True, True, False])
    seen = [np.array([0, 3]), np.arange(N_MOVIES), np.array([], int)]
    top = scorer.top_by_ranking(users, vectors, seen)
    rating, ranked = numpy_scores(model, 2, users, vectors)
    assert top.movies.shape == top.rating.shape == top.ranking.shape == (3, N_MOVIES)
    for line, rows in enumerate(seen):
        masked = ranked[line].copy()
        masked[rows] = -np.inf
        unseen = N_MOVIES - len(rows)
        best = np.argsort(-masked, kind="stable")[:unseen]
        assert top.movies[line].tolist() == [*best.tolist(), *[-1] * (N_MOVIES - unseen)]
        np.testing.assert_allclose(top.ranking[line, :unseen], ranked[line, best], rtol=1e-5, atol=TOLERANCE)
        np.testing.assert_allclose(top.rating[line, :unseen], rating[line, best], rtol=1e-5, atol=TOLERANCE)
        assert np.all(top.ranking[line, unseen:] == -np.inf)


def test_at_most_max_k_movies_are_listed() -> None:
    model = model_of(1, True, n_movies=MAX_K + 21)
    top = Scorer(model).top_by_ranking(np.array([2]), None, [np.array([], int)])
    _, ranked = numpy_scores(model, 1, np.array([2]))
    assert top.movies.tolist() == [np.argsort(-ranked[0], kind="stable")[:MAX_K].tolist()]


def test_a_model_without_ranking_tables_has_no_top_movies_model() -> None:
    scorer = Scorer(model_of(2, False))
    assert scorer.top_movies == {} and scorer.rank == 0
    with pytest.raises(AssertionError, match=r"^top_by_ranking needs a bundle with ranking tables$"):
        scorer.top_by_ranking(np.array([0]), None, [np.array([], int)])


@pytest.mark.parametrize(("members", "ranking"), SHAPES, ids=SHAPE_IDS)
def test_the_scorer_reads_the_model_s_sizes_and_makes_placeholder_vectors_of_them(
    members: int, ranking: bool
) -> None:
    scorer = Scorer(model_of(members, ranking))
    rank = RANK if ranking else 0
    assert (scorer.members, scorer.dim, scorer.rank, scorer.n_movies) == (members, DIM, rank, N_MOVIES)
    placeholder = scorer.no_vectors(3)
    assert placeholder.rating.shape == (3, members, DIM + 1) and placeholder.ranking.shape == (3, rank)
    assert placeholder.rating.dtype == placeholder.ranking.dtype == np.float32
    assert placeholder.given.tolist() == [False] * 3
    assert not placeholder.rating.any() and not placeholder.ranking.any()


def test_the_tables_are_found_by_their_contract_names() -> None:
    model = model_of(2, True)
    tables = Tables.of(model)
    assert len(tables.members) == 2 and tables.has_ranking
    for member, found in enumerate(tables.members):
        assert set(found) == set(MEMBER_ROLES)
        for role in MEMBER_ROLES:
            assert found[role] is model.get_layer(member_layer_name(member, role)).embeddings
    np.testing.assert_array_equal(tables.ranking_rows([4, 0]), table(model, RANKING_MOVIE_LAYER)[[4, 0]])
    rating_only = Tables.of(model_of(1, False))
    assert rating_only.ranking_users is rating_only.ranking_movies is rating_only.ranking_scales is None
    with pytest.raises(ValueError, match="no layer named 'member0_user_embedding' in the model"):
        Tables.of(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


@pytest.mark.parametrize(("rows", "padded"), [(0, 1), (1, 1), (2, 2), (3, 4), (5, 8), (64, 64), (65, 128)])
def test_a_call_is_padded_to_the_next_power_of_two(rows: int, padded: int) -> None:
    assert padded_size(rows) == padded


@pytest.mark.parametrize("ranking", [True, False], ids=["ranking tables", "no ranking tables"])
def test_warm_up_makes_each_call_a_lone_first_request_makes(ranking: bool, monkeypatch) -> None:
    """One row through the saved model, one through the catalogue model with the user's own rows
    and one with given vectors (fold-in), and one through each top-k model if there are any: with
    the dtypes requests use (int32 rows, a bool `given`), which TensorFlow traces by."""
    scorer = Scorer(model_of(2, ranking))
    calls: list[tuple[str, int, tuple | None]] = []
    tops = {f"top {length}": model for length, model in scorer.top_movies.items()}
    models = {"saved": scorer.model, "catalogue": scorer.all_movies, **tops}
    for label, derived in models.items():
        call = derived.predict_on_batch

        def recording(inputs, call=call, label=label):
            users, given = (inputs["users"], inputs["given"]) if isinstance(inputs, dict) else (inputs, None)
            given = None if given is None else (users.dtype.name, given.dtype.name, *given.tolist())
            calls.append((label, len(keras.tree.flatten(inputs)[0]), given))
            return call(inputs)

        monkeypatch.setattr(derived, "predict_on_batch", recording)
    scorer.warm_up()
    own, given = ("int32", "bool", False), ("int32", "bool", True)
    expected = [("saved", 1, None), ("catalogue", 1, own), ("catalogue", 1, given)]
    assert calls == expected + [(label, 1, own) for label in tops]
    assert len(tops) == (1 if ranking else 0)  # one list length: the model has fewer movies than 20


def test_warm_up_traces_every_top_movies_model_once(monkeypatch) -> None:
    """With more movies than the short list, both top-movies models get their first call before
    any request (a batch of short lists must not pay for tracing)."""
    scorer = Scorer(model_of(1, True, n_movies=SHORT_LIST + 5))
    called: list[int] = []
    for length, model in scorer.top_movies.items():

        def recording(inputs, call=model.predict_on_batch, length=length):
            called.append(length)
            return call(inputs)

        monkeypatch.setattr(model, "predict_on_batch", recording)
    scorer.warm_up()
    assert called == [SHORT_LIST, SHORT_LIST + 5]
