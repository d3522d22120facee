"""`GET /movies/{movie_id}`: one movie of the catalogue."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, HTTPException

from app.api.deps import BundleDep, MovieIdPath, movie_fields
from app.api.responses import NOT_FOUND
from app.schemas import Movie

router = APIRouter(tags=["data"])


@router.get("/movies/{movie_id}", response_model=Movie, responses=NOT_FOUND, summary="A movie")
async def movie(movie_id: MovieIdPath, bundle: BundleDep) -> Movie:
    """Title, genres, and how often and how well the movie was rated."""
    row = bundle.movie_rows.get(movie_id)
    if row is None:
        raise HTTPException(404, f"unknown movie_id {movie_id}: no ratings for this movie in the data set")
    mean = bundle.mean_ratings[row]
    return Movie(
        **movie_fields(bundle, row),
        ratings_count=int(bundle.rating_counts[row]),
        mean_rating=None if np.isnan(mean) else round(float(mean), 4),
    )
