"""`GET /movies?query=`: title search over the catalogue; `GET /movies/{movie_id}`: one movie.

The catalogue is the served bundle's: the movies someone rated in the data set it was trained on.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query

from app.api.deps import BundleDep, MovieIdPath, movie_fields
from app.api.responses import NOT_FOUND
from app.schemas import Movie, MovieSearch
from app.served import ServedBundle

router = APIRouter(tags=["data"])

QUERY_MAX_CHARS = 100


@router.get("/movies", response_model=MovieSearch, summary="Find movies by title")
async def search_movies(
    bundle: BundleDep,
    query: Annotated[
        str | None,
        Query(
            max_length=QUERY_MAX_CHARS,
            description="Words of the title, in any order; case, accents and punctuation do not matter "
            "('amelie' finds 'Amélie', 'spider man' finds 'Spider-Man'). Left out or blank: the "
            "most-rated movies",
            examples=["amelie"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="How many movies to return")] = 10,
) -> MovieSearch:
    """Movies whose titles hold every word of the query, most-rated first."""
    if query is None or not query.strip():
        rows = bundle.popular_rows[:limit]
    else:
        rows = bundle.titles.search(query, limit)
    return MovieSearch(query=query, movies=[_movie(bundle, int(row)) for row in rows])


@router.get("/movies/{movie_id}", response_model=Movie, responses=NOT_FOUND, summary="A movie")
async def movie(movie_id: MovieIdPath, bundle: BundleDep) -> Movie:
    """Title, genres, and how often and how well the movie was rated."""
    row = bundle.movie_rows.get(movie_id)
    if row is None:
        raise HTTPException(404, f"unknown movie_id {movie_id}: no ratings for this movie in the data set")
    return _movie(bundle, row)


def _movie(bundle: ServedBundle, row: int) -> Movie:
    mean = bundle.mean_ratings[row]
    return Movie(
        **movie_fields(bundle, row),
        ratings_count=int(bundle.rating_counts[row]),
        mean_rating=None if np.isnan(mean) else round(float(mean), 4),
    )
