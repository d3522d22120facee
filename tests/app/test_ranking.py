"""Top-k selection with each user's rated movies masked out."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from app.ranking import popularity, top_k_unseen


def test_top_k_unseen_masks_rated_movies_and_sorts_best_first():
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.7, 0.3],
            [0.8, 0.6, 0.4, 0.2, 0.0],
            [0.5, 0.5, 0.5, 0.9, 0.1],
        ]
    )
    original = scores.copy()
    seen = [np.array([1]), np.array([0, 1, 2, 3]), np.array([], dtype=int)]
    top = top_k_unseen(scores, seen, 3)
    assert top[0].tolist() == [3, 2, 4]  # 0.9 is rated: 0.7, 0.5, 0.3
    assert top[1].tolist() == [4, -1, -1]  # one unrated movie left, the rest padded
    assert top[2][0] == 3 and len(set(top[2][1:])) == 2 and set(top[2][1:]) <= {0, 1, 2}  # ties
    np.testing.assert_array_equal(scores, original)  # the caller's scores are not modified


def test_top_k_unseen_agrees_with_a_full_sort_and_caps_k():
    rng = np.random.default_rng(1)
    scores = rng.uniform(size=(20, 50))
    seen = [rng.choice(50, rng.integers(0, 40), replace=False) for _ in range(20)]
    top = top_k_unseen(scores, seen, 10)
    for row in range(20):
        masked = scores[row].copy()
        masked[seen[row]] = -np.inf
        assert top[row].tolist() == np.argsort(-masked)[:10].tolist()
        assert not set(top[row].tolist()) & set(seen[row].tolist())
    assert top_k_unseen(scores[:2], seen[:2], 100).shape == (2, 50)


@st.composite
def scores_and_seen(draw):
    users, movies = draw(st.integers(1, 6)), draw(st.integers(1, 30))
    scores = draw(arrays(np.float32, (users, movies), elements=st.floats(-5, 5, width=32, allow_nan=False)))
    seen = [
        np.array(sorted(draw(st.sets(st.integers(0, movies - 1), max_size=movies))), dtype=int)
        for _ in range(users)
    ]
    return scores, seen, draw(st.integers(1, 40))


@given(scores_and_seen())
@settings(max_examples=200, deadline=None)
def test_top_k_is_never_a_rated_movie_and_is_sorted_best_first(case):
    scores, seen, k = case
    top = top_k_unseen(scores, seen, k)
    assert top.shape == (len(scores), min(k, scores.shape[1]))
    for row, listed in enumerate(top):
        chosen = listed[listed >= 0]
        unseen = np.setdiff1d(np.arange(scores.shape[1]), seen[row])
        assert not set(chosen.tolist()) & set(seen[row].tolist())
        assert len(chosen) == min(k, len(unseen)) and len(set(chosen.tolist())) == len(chosen)
        assert np.all(listed[len(chosen) :] == -1), "padding only at the end"
        values = scores[row, chosen]
        assert np.all(np.diff(values) <= 0), "best first"
        if len(chosen) < len(unseen):  # nothing left out beats what was chosen
            rest = np.setdiff1d(unseen, chosen)
            assert scores[row, rest].max() <= values.min()


def test_popularity_counts_every_movie_of_the_catalogue_unrated_ones_included():
    """One count per movie row, the unrated last rows too: the array lines up with the catalogue."""
    counts = popularity(np.array([0, 2, 2, 0, 2]), n_movies=5)
    assert counts.tolist() == [2, 0, 3, 0, 0]


def test_the_single_best_is_each_rows_maximum():
    """k = 1, the edge of the partial sort: the one movie kept is the row's best."""
    scores = np.random.default_rng(4).normal(size=(200, 30))
    top = top_k_unseen(scores, [np.array([], int)] * 200, 1)
    assert top[:, 0].tolist() == np.argmax(scores, axis=1).tolist()
