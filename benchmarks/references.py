"""The naive and floor reference servers the load benchmark measures the real one against.

    python -m benchmarks.references {naive,floor} [--model-dir DIR] --port PORT

Small FastAPI apps on the same bundle, with the real server's routes and schemas; what each does
and why: benchmarks/README.md.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import FastAPI, HTTPException, Query
from starlette.responses import Response

from app.bundle import MEMBER_ROLES, RANKING_OUTPUT, RATING_OUTPUT, load_bundle
from app.bundle_store import current_bundle_path
from app.ranking import top_k_unseen
from app.schemas import PredictBody, Predictions, Recommendations, Status
from app.scoring import Tables
from benchmarks import parser

UNKNOWN = "unknown user_id or movie_id"
FIELDS = ("rank", "movie_id", "title", "genres", "predicted_rating", "score", "because")
K = Annotated[int, Query(ge=1, le=100, description="How many movies to return")]


class Reference:
    """One bundle, answering as the naive or the floor server."""

    def __init__(self, kind: str, bundle_path: Path) -> None:
        self.kind, self.bundle = kind, load_bundle(bundle_path)
        self.encoders, self.n_movies = self.bundle.encoders, len(self.bundle.encoders.movies)
        self.user_rows = {user_id: row for row, user_id in enumerate(self.encoders.users)}
        self.movie_rows = {movie_id: row for row, movie_id in enumerate(self.encoders.movies)}
        if kind == "naive":
            self.recommend(self.encoders.users[0], 10)  # traces predict once, as the real server warms up
            return
        tables = Tables.of(self.bundle.model)  # the trained tables, float32
        user, movie, user_bias, movie_bias = (
            np.stack([m[role] for m in tables.members]) for role in MEMBER_ROLES
        )
        self.user_vectors, self.movie_vectors = user, movie  # (members, rows, dim)
        self.user_bias, self.movie_bias = user_bias[..., 0], movie_bias[..., 0]
        self.ranking_users = np.asarray(tables.ranking_users)
        self.ranking_movies = np.asarray(tables.ranking_movies)
        self.ranking_scales = np.asarray(tables.ranking_scales)[:, 0]
        self.bundle = replace(self.bundle, model=None)  # nothing below calls Keras
        gc.collect()  # TensorFlow leaves ~400,000 long-lived objects each full collection would walk
        gc.freeze()

    async def readyz(self) -> Status:
        return Status(status="ready", model_version=self.bundle.version)

    def recommend(self, user_id: int, k: K = 10) -> Any:
        if (user := self.user_rows.get(user_id)) is None:
            raise HTTPException(404, f"unknown user_id {user_id}")
        rated = self.bundle.ratings.of(user)[0]
        if self.kind == "naive":  # the seed notebook's code, names and all, ranking by `ranking`
            movies_watched = set(rated.tolist())
            movies_not_watched = [[m] for m in range(self.n_movies) if m not in movies_watched]
            user_movie_array = np.hstack(([[user]] * len(movies_not_watched), movies_not_watched))
            outputs = self.bundle.model.predict(user_movie_array.astype(np.int32), verbose=0)
            ranking, ratings = outputs[RANKING_OUTPUT].flatten(), outputs[RATING_OUTPUT].flatten()
            top_indices = ranking.argsort(kind="stable")[-k:][::-1]
            top = [movies_not_watched[i][0] for i in top_indices]
            return self.listing(user_id, top, ratings[top_indices], ranking[top_indices])
        # One matrix-vector product for the ranking of every movie, then the rating of the k listed.
        ranking = (self.ranking_movies @ self.ranking_users[user]) * self.ranking_scales
        top = top_k_unseen(ranking[None], [rated], k)[0]
        top = top[top >= 0]
        logits = np.einsum("mkd,md->mk", self.movie_vectors[:, top], self.user_vectors[:, user])
        ratings = sigmoid(logits + self.user_bias[:, user, None] + self.movie_bias[:, top]).mean(0)
        return self.listing(user_id, top.tolist(), ratings, ranking[top])

    def listing(self, user_id: int, rows: list[int], ratings: np.ndarray, ranking: np.ndarray) -> Response:
        ids, titles, genres = self.encoders.movies, self.bundle.catalogue.titles, self.bundle.catalogue.genres
        stars = self.encoders.to_stars(ratings.astype(np.float64)).tolist()
        found = []
        for n, (r, s, g) in enumerate(zip(rows, stars, ranking.tolist(), strict=True), start=1):
            values = (n, ids[r], titles[r], genres[r], round(s, 4), round(float(g), 6), None)
            found.append(dict(zip(FIELDS, values, strict=True)))
        return self.json({"user_id": user_id, "source": "model", "recommendations": found})

    def json(self, body: dict[str, Any]) -> Response:
        """`body` with the bundle's version, written straight to JSON: the least a correct server can do."""
        return Response(
            orjson.dumps({"model_version": self.bundle.version, **body}), media_type="application/json"
        )

    def predict(self, body: PredictBody) -> Response:
        rows = [(self.user_rows.get(p.user_id), self.movie_rows.get(p.movie_id)) for p in body.pairs]
        known = [i for i, (u, m) in enumerate(rows) if u is not None and m is not None]
        users, movies = (np.array([rows[i][j] for i in known], dtype=np.int32) for j in (0, 1))
        if not known:
            scores = np.zeros(0)
        elif self.kind == "naive":
            pairs = np.stack([users, movies], axis=1)
            scores = self.bundle.model.predict(pairs, verbose=0)[RATING_OUTPUT].flatten()
        else:
            logits = np.einsum("mpd,mpd->mp", self.user_vectors[:, users], self.movie_vectors[:, movies])
            logits += self.user_bias[:, users] + self.movie_bias[:, movies]
            scores = sigmoid(logits).mean(axis=0)
        stars = dict(zip(known, self.encoders.to_stars(scores.astype(np.float64)).tolist(), strict=True))
        out = []
        for i, p in enumerate(body.pairs):
            rating, error = (round(stars[i], 4), None) if i in stars else (None, UNKNOWN)
            out.append(dict(user_id=p.user_id, movie_id=p.movie_id, predicted_rating=rating, error=error))
        return self.json({"predictions": out})


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def create_app(kind: str, bundle_path: Path) -> FastAPI:
    """Sync routes for the naive server (FastAPI runs them in its thread pool, as a plain port of the
    notebook would); the floor's on the event loop, its work being less than a thread hop."""
    reference, app = Reference(kind, bundle_path), FastAPI(title=f"{kind} reference")
    recommend, predict = reference.recommend, reference.predict
    if kind == "floor":
        recommend, predict = on_loop(recommend), on_loop(predict)
    app.get("/readyz")(reference.readyz)
    app.get("/users/{user_id}/recommendations", response_model=Recommendations)(recommend)
    app.post("/predict", response_model=Predictions)(predict)
    return app


def on_loop(method: Callable[..., Any]) -> Callable[..., Any]:
    """The same route as a coroutine, which FastAPI runs on its event loop."""

    @functools.wraps(method)
    async def route(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    return route


def main(argv: list[str] | None = None) -> int:
    arguments = parser("references", __doc__)
    arguments.add_argument("kind", choices=["naive", "floor"])
    arguments.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    arguments.add_argument("--host", default="127.0.0.1")
    arguments.add_argument("--port", type=int, required=True)
    args = arguments.parse_args(argv)
    import uvicorn

    app = create_app(args.kind, current_bundle_path(args.model_dir))
    print(f"{args.kind} reference on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
