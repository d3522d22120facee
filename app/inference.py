"""What one model call does for a batch of merged requests: top-k lists, or predicted stars.

The micro-batchers hand these functions whole batches on the model thread. Each groups its
requests by the bundle they started on (two only during a live swap) and makes one scoring call
per bundle, then gives every request back exactly its own part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.ranking import top_k_unseen
from app.served import Ranked, ServedBundle


@dataclass(frozen=True)
class RecommendRequest:
    bundle: ServedBundle
    user_row: int
    k: int


@dataclass(frozen=True)
class PredictRequest:
    bundle: ServedBundle
    pairs: np.ndarray  # int32 (n, 2) rows of [user_row, movie_row], known ids only


def recommend_batch(requests: Sequence[RecommendRequest]) -> list[Ranked]:
    """Top-k unrated movies for a batch of users: one scoring call per bundle in the batch."""
    results: dict[int, Ranked] = {}
    for bundle, indices in _group_by_bundle(requests):
        users = np.array([requests[i].user_row for i in indices], dtype=np.int32)
        k = max(requests[i].k for i in indices)
        scores = bundle.scorer.score_users(users)
        tops = top_k_unseen(scores, [bundle.seen(u) for u in users], k)
        for position, i in enumerate(indices):
            top = tops[position, : requests[i].k]
            top = top[top >= 0]
            stars = bundle.encoders.to_stars(scores[position, top].astype(np.float64))
            results[i] = Ranked(top, stars)
    return [results[i] for i in range(len(requests))]


def predict_batch(requests: Sequence[PredictRequest]) -> list[np.ndarray]:
    """Predicted stars for each request's pairs: one scoring call per bundle in the batch."""
    results: dict[int, np.ndarray] = {}
    for bundle, indices in _group_by_bundle(requests):
        pairs = [requests[i].pairs for i in indices]
        stars = bundle.encoders.to_stars(bundle.scorer.score_pairs(np.concatenate(pairs)).astype(np.float64))
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
