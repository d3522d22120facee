"""The ranking output: EASE in low-rank eigen form, and what it learns from planted tastes."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from app.bundle import RANKING_OUTPUT, RATING_OUTPUT
from app.bundle_store import current_bundle_path
from app.ranking import top_k_unseen
from tests.support.data import TASTE_GENRES, genre_taste
from training.ranking import dense_ease_weights, fit_ranking, interactions


def random_ratings(n_users: int, n_movies: int, density: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    cells = np.flatnonzero(rng.random(n_users * n_movies) < density)
    pairs = np.stack(np.divmod(cells, n_movies), axis=1).astype(np.int32)
    return pairs, rng.choice(np.arange(1, 11) / 2, len(pairs))


def test_interactions_hold_stars_over_the_top_of_the_scale():
    pairs = np.array([[0, 1], [1, 0], [1, 2]])
    x = interactions(pairs, np.array([5.0, 2.5, 0.5]), 2, 3, top_stars=5.0).toarray()
    assert x.tolist() == [[0.0, 1.0, 0.0], [0.5, 0.0, 0.1]]
    unrated = interactions(pairs, np.array([5.0, 2.5, 0.5]), 3, 4, top_stars=5.0)
    assert unrated.shape == (3, 4), "a user or movie with no rating still has its row and column"


def test_with_every_eigenvector_kept_the_tables_score_exactly_as_dense_ease():
    """The low-rank form is EASE itself when no eigenvalue is dropped: on movies a user has not
    rated, (X[u] @ C) . C[j] / P[j, j] equals X[u] @ B[:, j] with B in closed form."""
    n_users, n_movies, l2 = 40, 25, 3.0
    pairs, stars = random_ratings(n_users, n_movies, 0.3, seed=1)
    tables = fit_ranking(pairs, stars, n_users, n_movies, top_stars=5.0, l2=l2, rank=n_movies, seed=0)
    x = interactions(pairs, stars, n_users, n_movies, 5.0)
    weights = dense_ease_weights(x, l2)
    assert not np.diag(weights).any(), "EASE's constraint: no movie recommends itself"
    dense = np.asarray(x @ weights)
    low_rank = (tables.users @ tables.movies.T) * tables.scales
    unrated = x.toarray() == 0
    np.testing.assert_allclose(low_rank[unrated], dense[unrated], rtol=1e-4, atol=1e-5)


def test_the_user_table_is_the_star_weighted_sum_of_the_movie_rows():
    """What makes fold-in exact: a user's vector is a sum over their ratings of movie rows."""
    pairs, stars = random_ratings(30, 50, 0.2, seed=2)
    tables = fit_ranking(pairs, stars, 30, 50, top_stars=5.0, l2=10.0, rank=8, seed=0)
    for user in (0, 7, 29):
        mine = pairs[:, 0] == user
        expected = (stars[mine] / 5.0) @ tables.movies[pairs[mine, 1]]
        np.testing.assert_allclose(tables.users[user], expected, rtol=1e-5, atol=1e-6)


def test_truncation_keeps_the_largest_eigenvalues_first():
    pairs, stars = random_ratings(60, 80, 0.2, seed=3)
    small = fit_ranking(pairs, stars, 60, 80, top_stars=5.0, l2=5.0, rank=4, seed=0)
    large = fit_ranking(pairs, stars, 60, 80, top_stars=5.0, l2=5.0, rank=40, seed=0)
    assert small.movies.shape == (80, 4) and large.movies.shape == (80, 40)
    # The first 4 columns span the same space (up to sign) whatever the rank asked for.
    overlap = np.abs(np.linalg.svd(small.movies.T @ large.movies[:, :4], compute_uv=False))
    norms = np.linalg.norm(small.movies, axis=0) * np.linalg.norm(large.movies[:, :4], axis=0)
    assert overlap.sum() == pytest.approx(norms.sum(), rel=1e-3)


def test_the_ranking_tables_are_reproducible_from_the_seed():
    """The randomized SVD draws from the seeded generator: a retrain gives the same tables, bit for
    bit (eigenvectors from another draw could differ in sign, and so would every user row)."""
    pairs, stars = random_ratings(60, 80, 0.2, seed=3)
    first, again = (
        fit_ranking(pairs, stars, 60, 80, top_stars=5.0, l2=5.0, rank=4, seed=7) for _ in range(2)
    )
    for table in ("users", "movies", "scales"):
        np.testing.assert_array_equal(getattr(first, table), getattr(again, table))
        assert getattr(first, table).dtype == np.float32, "the precision of the model's embeddings"


@pytest.fixture(scope="module")
def taste(taste_model_dir):
    bundle = current_bundle_path(taste_model_dir)
    model = keras.saving.load_model(bundle / "model.keras", safe_mode=True)
    encoders = json.loads((bundle / "encoders.json").read_text())
    metadata = json.loads((bundle / "metadata.json").read_text())
    ratings, movies = genre_taste()
    genre_of = dict(zip(movies["movieId"], movies["genres"], strict=True))
    n_users, n_movies = len(encoders["users"]), len(encoders["movies"])
    pairs = np.stack(np.meshgrid(np.arange(n_users), np.arange(n_movies), indexing="ij"), -1).reshape(-1, 2)
    outputs = model.predict(pairs.astype(np.int32), batch_size=1 << 16, verbose=0)
    scores = {name: outputs[name].reshape(n_users, n_movies) for name in (RATING_OUTPUT, RANKING_OUTPUT)}
    movie_row = {movie: row for row, movie in enumerate(encoders["movies"])}
    seen = [
        np.array([movie_row[m] for m in ratings.loc[ratings.userId == u, "movieId"]])
        for u in encoders["users"]
    ]
    taste_of = [TASTE_GENRES[(u - 1) % len(TASTE_GENRES)] for u in encoders["users"]]
    movie_genres = np.array([genre_of[m] for m in encoders["movies"]])
    return scores, seen, taste_of, movie_genres, metadata


def test_the_ranking_output_recovers_each_users_planted_taste(taste):
    scores, seen, taste_of, movie_genres, metadata = taste
    top = top_k_unseen(scores[RANKING_OUTPUT], seen, 10)
    in_taste = np.mean(
        [movie_genres[row] == genre for rows, genre in zip(top, taste_of, strict=True) for row in rows]
    )
    assert in_taste >= 0.9, f"only {in_taste:.0%} of the top-10 slots are in the user's liked genre"
    figures = metadata["metrics"]
    assert figures["model"]["ndcg@10"] > 2 * figures["most popular"]["ndcg@10"]


def test_the_rating_output_does_its_own_job_on_the_same_data(taste):
    """Predicted stars: liked-genre movies well above the rest, and held-out error below the mean's."""
    scores, _, taste_of, movie_genres, metadata = taste
    liked = movie_genres[None, :] == np.array(taste_of)[:, None]
    stars = 0.5 + 4.5 * scores[RATING_OUTPUT]
    assert stars[liked].mean() - stars[~liked].mean() > 1.0
    figures = metadata["metrics"]
    assert figures["model"]["rmse"] < figures["global mean"]["rmse"]


def test_a_gram_matrix_that_cannot_be_inverted_is_refused_not_used():
    """A negative l2 larger than every rating's weight leaves X^T X + l2 I indefinite: its Cholesky
    factor fails, and weights from a failed factorisation must never be returned."""
    pairs, stars = random_ratings(20, 8, 0.5, seed=2)
    x = interactions(pairs, stars, 20, 8, top_stars=5.0)
    with pytest.raises(ValueError, match="cannot invert"):
        dense_ease_weights(x, l2=-1000.0)
