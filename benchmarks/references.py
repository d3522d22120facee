"""The two reference servers the load benchmark measures the real one against.

Each is a small FastAPI app on the same bundle, answering the same routes with the same JSON shape
as the real server (`GET /users/{id}/recommendations`, `POST /predict`, `GET /readyz`):

* **naive**: what the seed notebook does, once per request: build the array of every (user, unrated
  movie) pair, `model.predict` it (Keras defaults: batches of 32), `argsort`, take the top k. A sync
  route, so FastAPI runs it in its thread pool, as a plain FastAPI port of the notebook would.
* **floor**: the least work a correct answer takes: the embedding tables are read once from
  `model.keras` (layers `member{i}_user_embedding`, `member{i}_movie_embedding`, `member{i}_user_bias`,
  `member{i}_movie_bias`), and each request is one numpy matrix-vector product per member, sigmoid,
  mean over members, the user's rated movies masked, `argpartition`. No Keras call, no batching, no
  middleware, on the event loop; the heap left by loading is frozen (`gc.freeze`), as the real
  server does since a5c510b.

    python -m benchmarks.references {naive,floor} --model-dir DIR --port PORT
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

# Same shapes as app/schemas.py, redeclared so a reference never runs the real server's code.


class Recommendation(BaseModel):
    rank: int
    movie_id: int
    title: str
    genres: list[str]
    predicted_rating: float


class Recommendations(BaseModel):
    user_id: int
    model_version: str
    source: str
    recommendations: list[Recommendation]


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int
    movie_id: int


class PredictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: list[Pair] = Field(min_length=1, max_length=10_000)


class Prediction(BaseModel):
    user_id: int
    movie_id: int
    predicted_rating: float | None
    error: str | None


class Predictions(BaseModel):
    model_version: str
    predictions: list[Prediction]


K = Annotated[int, Query(ge=1, le=100, description="How many movies to return")]


class Status(BaseModel):
    status: str
    model_version: str | None = None


class Reference:
    """The bundle's lookups and catalogue, shared by both references."""

    def __init__(self, bundle_path: Path) -> None:
        from app.bundle import load_bundle  # the contract's one reader: same files, same checks

        bundle = load_bundle(bundle_path)
        self.version = bundle.version
        self.keras_model = bundle.model
        self.encoders = bundle.encoders
        self.titles = bundle.catalogue.titles
        self.genres = bundle.catalogue.genres
        self.ratings = bundle.ratings
        self.user_rows = {user_id: row for row, user_id in enumerate(bundle.encoders.users)}
        self.movie_rows = {movie_id: row for row, movie_id in enumerate(bundle.encoders.movies)}
        self.n_movies = len(bundle.encoders.movies)

    def user_row(self, user_id: int) -> int:
        row = self.user_rows.get(user_id)
        if row is None:
            raise HTTPException(404, f"unknown user_id {user_id}")
        return row

    def stars(self, scores: np.ndarray) -> np.ndarray:
        return self.encoders.rating_min + scores.astype(np.float64) * (
            self.encoders.rating_max - self.encoders.rating_min
        )

    def listing(self, user_id: int, movie_rows: np.ndarray, stars: np.ndarray) -> Recommendations:
        return Recommendations(
            user_id=user_id,
            model_version=self.version,
            source="model",
            recommendations=[
                Recommendation(
                    rank=rank,
                    movie_id=self.encoders.movies[row],
                    title=self.titles[row],
                    genres=self.genres[row],
                    predicted_rating=round(float(star), 4),
                )
                for rank, (row, star) in enumerate(zip(movie_rows.tolist(), stars, strict=True), start=1)
            ],
        )

    def known_pairs(self, body: PredictBody) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Positions of the pairs whose ids are both known, and their user and movie rows."""
        rows = [(self.user_rows.get(p.user_id), self.movie_rows.get(p.movie_id)) for p in body.pairs]
        known = [i for i, (u, m) in enumerate(rows) if u is not None and m is not None]
        users = np.array([rows[i][0] for i in known], dtype=np.int32)
        movies = np.array([rows[i][1] for i in known], dtype=np.int32)
        return known, users, movies

    def predictions(self, body: PredictBody, known: list[int], stars: np.ndarray) -> Predictions:
        by_position = dict(zip(known, stars.tolist(), strict=True))
        out = []
        for i, pair in enumerate(body.pairs):
            star = by_position.get(i)
            out.append(
                Prediction(
                    user_id=pair.user_id,
                    movie_id=pair.movie_id,
                    predicted_rating=None if star is None else round(star, 4),
                    error=None if star is not None else "unknown user_id or movie_id",
                )
            )
        return Predictions(model_version=self.version, predictions=out)


class Floor(Reference):
    """Scores with numpy on the trained tables; Keras is used only to read them at start-up."""

    def __init__(self, bundle_path: Path) -> None:
        super().__init__(bundle_path)
        layers = {layer.name: layer for layer in self.keras_model.layers}
        members = 0
        while f"member{members}_user_embedding" in layers:
            members += 1
        if not members:
            raise SystemExit("floor: no layer named member0_user_embedding in model.keras")

        def table(role: str) -> np.ndarray:
            return np.stack(
                [np.asarray(layers[f"member{i}_{role}"].get_weights()[0]) for i in range(members)]
            ).astype(np.float32)

        self.user_vectors = table("user_embedding")  # (members, users, dim)
        self.movie_vectors = np.ascontiguousarray(table("movie_embedding"))  # (members, movies, dim)
        self.user_bias = table("user_bias")[..., 0]  # (members, users)
        self.movie_bias = table("movie_bias")[..., 0]  # (members, movies)
        self.keras_model = None  # nothing below calls Keras

    def user_scores(self, user: int) -> np.ndarray:
        """Mean over members of sigmoid(M @ u + b_u + b_m): one matrix-vector product per member."""
        logits = np.matmul(self.movie_vectors, self.user_vectors[:, user, :, None])[..., 0]
        logits += self.user_bias[:, user, None] + self.movie_bias
        return (1.0 / (1.0 + np.exp(-logits))).mean(axis=0)

    def pair_scores(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        logits = np.einsum("mpd,mpd->mp", self.user_vectors[:, users], self.movie_vectors[:, movies])
        logits += self.user_bias[:, users] + self.movie_bias[:, movies]
        return (1.0 / (1.0 + np.exp(-logits))).mean(axis=0)

    def recommend(self, user_id: int, k: int) -> Recommendations:
        row = self.user_row(user_id)
        scores = self.user_scores(row)
        scores[self.ratings.of(row)[0]] = -np.inf
        k = min(k, self.n_movies)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[np.isfinite(scores[top])]
        return self.listing(user_id, top, self.stars(scores[top]))

    def predict(self, body: PredictBody) -> Predictions:
        known, users, movies = self.known_pairs(body)
        stars = self.stars(self.pair_scores(users, movies)) if known else np.zeros(0)
        return self.predictions(body, known, stars)


class Naive(Reference):
    """The seed notebook's recommendation code, run once per request."""

    def recommend(self, user_id: int, k: int) -> Recommendations:
        user_encoder = self.user_row(user_id)
        movies_watched = set(self.ratings.of(user_encoder)[0].tolist())
        movies_not_watched = [[m] for m in range(self.n_movies) if m not in movies_watched]
        user_movie_array = np.hstack(([[user_encoder]] * len(movies_not_watched), movies_not_watched))
        ratings = self.keras_model.predict(user_movie_array.astype(np.int32), verbose=0).flatten()
        top_ratings_indices = ratings.argsort()[-k:][::-1]
        top = np.array([movies_not_watched[i][0] for i in top_ratings_indices], dtype=np.int64)
        return self.listing(user_id, top, self.stars(ratings[top_ratings_indices]))

    def predict(self, body: PredictBody) -> Predictions:
        known, users, movies = self.known_pairs(body)
        stars = np.zeros(0)
        if known:
            scores = self.keras_model.predict(np.stack([users, movies], axis=1), verbose=0).flatten()
            stars = self.stars(scores)
        return self.predictions(body, known, stars)


def create_app(kind: str, bundle_path: Path) -> FastAPI:
    reference: Floor | Naive = Floor(bundle_path) if kind == "floor" else Naive(bundle_path)
    if isinstance(reference, Naive):  # trace predict once, as the real server warms up
        reference.recommend(reference.encoders.users[0], 10)
    else:
        # TensorFlow and Keras, imported to read the tables, leave ~400,000 long-lived objects that
        # every full collection would walk (~200 ms pauses); the floor should not pay for them.
        gc.collect()
        gc.freeze()
    app = FastAPI(title=f"{kind} reference")

    @app.get("/readyz")
    async def readyz() -> Status:
        return Status(status="ready", model_version=reference.version)

    if kind == "floor":
        # On the event loop: the work is a fraction of a millisecond, less than a thread hop.
        @app.get("/users/{user_id}/recommendations")
        async def floor_recommendations(user_id: int, k: K = 10) -> Recommendations:
            return reference.recommend(user_id, k)

        @app.post("/predict")
        async def floor_predict(body: PredictBody) -> Predictions:
            return reference.predict(body)

    else:
        # Sync routes: FastAPI runs each in its thread pool, as a plain port of the notebook would.
        @app.get("/users/{user_id}/recommendations")
        def naive_recommendations(user_id: int, k: K = 10) -> Recommendations:
            return reference.recommend(user_id, k)

        @app.post("/predict")
        def naive_predict(body: PredictBody) -> Predictions:
            return reference.predict(body)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.references", description=__doc__)
    parser.add_argument("kind", choices=["naive", "floor"])
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models")))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import uvicorn

    app = create_app(args.kind, (args.model_dir / "current").resolve())
    print(f"{args.kind} reference on http://{args.host}:{args.port}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
