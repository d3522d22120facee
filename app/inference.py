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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.ranking import top_k_unseen
from app.served import Ranked, ServedBundle, StoredRatings

RankBy = Literal["ranking", "rating"]


@dataclass(frozen=True)
class RecommendRequest:
    bundle: ServedBundle
    user_id: int
    k: int
    rank_by: RankBy = "ranking"
    explain: bool = False
    stored: StoredRatings | None = None  # the user's stored ratings; None: the store was not reached


@dataclass(frozen=True)
class Recommended:
    """A request's list, and where it came from: the user's own row (`model`) or fold-in. No list
    for a user neither the bundle nor the store knows (`unknown`), or whom only the store could
    know while it is down (`unavailable`)."""

    ranked: Ranked | None
    source: Literal["model", "fold-in", "unknown", "unavailable"]


@dataclass(frozen=True)
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
        scores = bundle.scorer.score_users(
            np.array([s.row for s in states], dtype=np.int32), bundle.vectors_of(states)
        )
        k = max(requests[indices[p]].k for p in scorable)
        seen = [s.seen for s in states]
        tops = {
            rank_by: top_k_unseen(getattr(scores, rank_by), seen, k)
            for rank_by in {requests[indices[p]].rank_by for p in scorable}
        }
        for line, (position, state) in enumerate(zip(scorable, states, strict=True)):
            request = requests[indices[position]]
            top = tops[request.rank_by][line, : request.k]
            top = top[top >= 0]
            ranked = Ranked(
                movie_rows=top,
                stars=bundle.encoders.to_stars(scores.rating[line, top].astype(np.float64)),
                scores=scores.ranking[line, top].astype(np.float64),
                because=bundle.closest_liked(top, state) if request.explain else None,
            )
            results[indices[position]] = Recommended(ranked, "fold-in" if state.folded_in else "model")
    return [results[i] for i in range(len(requests))]


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
