"""What one model call does for a batch of merged requests: top-k lists, or predicted stars.

The micro-batchers hand these functions whole batches on the model thread. Each groups its
requests by the bundle they started on (two only during a live swap) and makes one scoring call
per bundle, then gives every request back exactly its own part.

A recommendation request carries the user's stored ratings, read for the whole batch in one
query before the batch reaches the model thread. A user with stored ratings is scored through
fold-in vectors fitted to all their ratings (`ServedBundle.fold_in`), in the same call as the
users scored through their own rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np

from app.ranking import top_k_unseen
from app.served import Ranked, ServedBundle, StoredRatings, UserState

RankBy = Literal["ranking", "rating"]


@dataclasses.dataclass(frozen=True)
class RecommendRequest:
    bundle: ServedBundle
    user_id: int
    k: int
    rank_by: RankBy = "ranking"
    explain: bool = False
    stored: StoredRatings | None = None  # the user's stored ratings; None: the store was not reached


@dataclasses.dataclass(frozen=True)
class Recommended:
    """A request's list, and where it came from: the user's own row (`model`) or fold-in. No list
    for a user neither the bundle nor the store knows (`unknown`), or whom only the store could
    know while it is down (`unavailable`)."""

    ranked: Ranked | None
    source: Literal["model", "fold-in", "unknown", "unavailable"]


@dataclasses.dataclass(frozen=True)
class PredictRequest:
    bundle: ServedBundle
    pairs: np.ndarray  # int32 (n, 2) rows of [user_row, movie_row], known ids only


def recommend_batch(requests: Sequence[RecommendRequest]) -> list[Recommended]:
    """Top-k unrated movies for a batch of users: one scoring call per bundle in the batch."""
    results: dict[int, Recommended] = {}
    for bundle, indices in _group_by_bundle(requests):
        users = [bundle.user_state(requests[i].user_id, requests[i].stored or ()) for i in indices]
        scorable = [position for position, user in enumerate(users) if user is not None]
        for position, i in enumerate(indices):
            if users[position] is None:
                results[i] = Recommended(None, "unknown" if requests[i].stored is not None else "unavailable")
        if not scorable:
            continue
        states = [users[p] for p in scorable]
        batch = [requests[indices[p]] for p in scorable]
        for line, ranked in enumerate(_rank(bundle, states, batch)):
            request = batch[line]
            if request.explain:
                ranked = dataclasses.replace(
                    ranked, because=bundle.closest_liked(ranked.movie_rows, states[line])
                )
            results[indices[scorable[line]]] = Recommended(
                ranked, "fold-in" if states[line].folded_in else "model"
            )
    return [results[i] for i in range(len(requests))]


def _rank(bundle: ServedBundle, states: list[UserState], batch: list[RecommendRequest]) -> list[Ranked]:
    """Each user's list: by `ranking` inside the model (the k best, then their ratings) when the
    whole batch asks for it, else from both outputs for every movie."""
    rows = np.array([s.row for s in states], dtype=np.int32)
    vectors, seen = bundle.vectors_of(states), [s.seen for s in states]
    if bundle.scorer.top_movies and all(r.rank_by == "ranking" for r in batch):
        best = bundle.scorer.top_by_ranking(rows, vectors, seen, max(r.k for r in batch))
        movies, rating, ranking = best.movies, best.rating, best.ranking
    else:
        scores = bundle.scorer.score_users(rows, vectors)
        k = max(r.k for r in batch)
        by = {
            rank_by: top_k_unseen(getattr(scores, rank_by), seen, k) for rank_by in {r.rank_by for r in batch}
        }
        lines = np.arange(len(batch))[:, None]
        movies = np.stack([by[r.rank_by][line] for line, r in enumerate(batch)])
        valid = np.maximum(movies, 0)
        rating, ranking = scores.rating[lines, valid], scores.ranking[lines, valid]
    ranked = []
    for line, request in enumerate(batch):
        listed = movies[line, : request.k]
        keep = listed >= 0
        ranked.append(
            Ranked(
                movie_rows=listed[keep],
                stars=bundle.encoders.to_stars(rating[line, : request.k][keep].astype(np.float64)),
                scores=ranking[line, : request.k][keep].astype(np.float64),
                because=None,
            )
        )
    return ranked


def predict_batch(requests: Sequence[PredictRequest]) -> list[np.ndarray]:
    """Predicted stars for each request's pairs: one scoring call per bundle in the batch."""
    results: dict[int, np.ndarray] = {}
    for bundle, indices in _group_by_bundle(requests):
        pairs = [requests[i].pairs for i in indices]
        scores = bundle.scorer.score_pairs(np.concatenate(pairs)).rating
        stars = bundle.encoders.to_stars(scores.astype(np.float64))
        bounds = np.cumsum([len(p) for p in pairs])[:-1]
        for i, part in zip(indices, np.split(stars, bounds), strict=True):
            results[i] = part
    return [results[i] for i in range(len(requests))]


def _group_by_bundle(
    requests: Sequence[RecommendRequest] | Sequence[PredictRequest],
) -> list[tuple[ServedBundle, list[int]]]:
    """Request positions grouped by the bundle each started on."""
    groups: dict[int, tuple[ServedBundle, list[int]]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(id(request.bundle), (request.bundle, []))[1].append(i)
    return list(groups.values())
