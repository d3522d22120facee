"""The HTTP API's request and response bodies; their descriptions and examples make the docs page."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UserId = Field(description="A MovieLens userId", examples=[1])
MovieId = Field(description="A MovieLens movieId", examples=[318])
Title = Field(description="Title and year, as in movies.csv", examples=["Shawshank Redemption, The (1994)"])
Genres = Field(description="Genres, as in movies.csv (split on '|')", examples=[["Crime", "Drama"]])
ModelVersion = Field(description="Version of the bundle that answered", examples=["20261129T055109Z-4350"])


class ErrorMessage(BaseModel):
    detail: str = Field(description="What was wrong and what to do", examples=["unknown user_id 999999"])


class Recommendation(BaseModel):
    rank: int = Field(description="1 for the best recommendation", ge=1, examples=[1])
    movie_id: int = MovieId
    title: str = Title
    genres: list[str] = Genres
    predicted_rating: float = Field(
        description="Predicted stars (0.5 to 5); for popular fallbacks, the damped mean rating",
        examples=[4.62],
    )


class Recommendations(BaseModel):
    user_id: int = UserId
    model_version: str = ModelVersion
    source: Literal["model", "popular"] = Field(
        description="'model' for personal scores, 'popular' for the fallback of an unknown user",
        examples=["model"],
    )
    recommendations: list[Recommendation] = Field(description="Best first; never a movie the user rated")


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int = UserId
    movie_id: int = MovieId


class PredictBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"pairs": [{"user_id": 1, "movie_id": 318}]}]},
    )

    pairs: list[Pair] = Field(
        min_length=1,
        description="User-movie pairs to score, 1 to PREDICT_MAX_PAIRS (default 10,000)",
    )


class Prediction(BaseModel):
    user_id: int = UserId
    movie_id: int = MovieId
    predicted_rating: float | None = Field(
        description="Predicted stars, or null when an id is unknown", examples=[4.31]
    )
    error: str | None = Field(
        description="Why there is no prediction (names the unknown id), else null", examples=[None]
    )


class Predictions(BaseModel):
    model_version: str = ModelVersion
    predictions: list[Prediction] = Field(description="One per pair, in request order")


class RatedMovie(BaseModel):
    movie_id: int = MovieId
    title: str = Title
    genres: list[str] = Genres
    rating: float = Field(description="The user's own rating in stars", examples=[5.0])


class UserRatings(BaseModel):
    user_id: int = UserId
    ratings: list[RatedMovie] = Field(description="The user's highest-rated movies, best first")


class Movie(BaseModel):
    movie_id: int = MovieId
    title: str = Title
    genres: list[str] = Genres
    ratings_count: int = Field(description="Ratings in the data set", ge=0, examples=[317])
    mean_rating: float | None = Field(description="Mean of those ratings in stars", examples=[4.43])


class Status(BaseModel):
    status: str = Field(description="'ok', 'ready' or what the server is waiting for", examples=["ok"])
    model_version: str | None = Field(
        default=None, description="Served bundle, once loaded", examples=["20261129T055109519036Z-4350"]
    )
