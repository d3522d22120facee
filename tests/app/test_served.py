"""A served bundle: fold-in vectors, merged ratings and explanations."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from app.bundle_store import current_bundle_path
from app.served import ServedBundle
from tests.support.data import genre_taste
from training.dataset import encode, seed_split


class Stored:
    """A stored rating, as the feedback store gives it."""

    def __init__(self, movie_id: int, rating: float) -> None:
        self.movie_id, self.rating, self.rated_at = movie_id, rating, datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def served(taste_model_dir) -> ServedBundle:
    return ServedBundle.load(current_bundle_path(taste_model_dir))


def test_the_ranking_fold_in_of_a_users_training_ratings_is_their_trained_vector(served):
    """Fold-in is exact: from the same ratings it gives the vector training computed."""
    ratings, _ = genre_taste()
    encoded = encode(ratings)
    train = seed_split(len(encoded.stars)).train
    table = np.asarray(served.scorer.tables.ranking_users)
    for row in (0, 17, encoded.n_users - 1):
        mine = train[encoded.pairs[train, 0] == row]
        movies = np.array([served.movie_rows[encoded.encoders.movies[m]] for m in encoded.pairs[mine, 1]])
        _, ranking = served.fold_in(movies, encoded.stars[mine].astype(np.float64))
        np.testing.assert_allclose(
            ranking, table[served.user_rows[encoded.encoders.users[row]]], rtol=1e-4, atol=1e-5
        )


def test_stored_ratings_replace_the_data_sets_and_unknown_movies_are_left_out(served):
    user = served.bundle.encoders.users[0]
    movies, _ = served.ratings.of(0)
    first = served.bundle.encoders.movies[movies[0]]
    merged = served.merged_ratings(user, [Stored(first, 0.5), Stored(987654321, 5.0)])
    assert merged[int(movies[0])][0] == 0.5 and merged[int(movies[0])][1] is not None
    assert {row for row, (_, when) in merged.items() if when is None} == set(movies[1:].tolist())
    assert len(merged) == len(movies)


def test_a_known_user_with_stored_ratings_is_refitted_and_never_gets_them_back(served):
    user = served.bundle.encoders.users[3]
    unrated = next(
        m for m in served.bundle.encoders.movies if served.movie_rows[m] not in served.ratings.of(3)[0]
    )
    plain = served.user_state(user, [])
    refitted = served.user_state(user, [Stored(unrated, 5.0)])
    assert plain.vectors is None and not plain.folded_in
    assert refitted.vectors is not None and not refitted.folded_in and refitted.row == plain.row
    assert served.movie_rows[unrated] in refitted.seen and served.movie_rows[unrated] not in plain.seen


def test_a_stranger_is_folded_in_only_with_stored_ratings(served):
    assert served.user_state(424242, []) is None
    state = served.user_state(424242, [Stored(served.bundle.encoders.movies[0], 4.0)])
    assert state.folded_in and state.seen.tolist() == [0] and state.liked.tolist() == [0]


def test_each_recommendation_is_explained_by_the_closest_liked_movie(served):
    liked = np.array([served.movie_rows[m] for m in served.bundle.encoders.movies[:3]])
    state = served.user_state(424242, [Stored(served.bundle.encoders.movies[i], 5.0) for i in range(3)])
    candidates = np.arange(10, 20)
    because = served.closest_liked(candidates, state)
    vectors = np.asarray(served.scorer.tables.ranking_movies)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = liked[np.argmax(unit[candidates] @ unit[liked].T, axis=1)]
    assert because == expected.tolist()
    disliked = served.user_state(424242, [Stored(served.bundle.encoders.movies[0], 2.0)])
    assert served.closest_liked(candidates, disliked) == [None] * 10
