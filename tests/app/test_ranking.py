"""Top-k selection with each user's rated movies masked out."""

from __future__ import annotations

import numpy as np

from app.ranking import top_k_unseen


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
