"""The HTTP API's request and response bodies; their descriptions and examples make the docs page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from app.bundle import Metadata
from app.feedback.schema import MAX_ID, RATING_MAX, RATING_MIN, RATING_STEP, valid_rating

UserId = Field(description="A MovieLens userId", examples=[1])
MovieId = Field(description="A MovieLens movieId", examples=[318])
Title = Field(description="Title and year, as in movies.csv", examples=["Shawshank Redemption, The (1994)"])
Genres = Field(description="Genres, as in movies.csv (split on '|')", examples=[["Crime", "Drama"]])
ModelVersion = Field(description="Version of the bundle that answered", examples=["20261129T055109Z-4350"])


def _integral(value: object) -> object:
    """134.0 is an integer to JSON Schema: accept it as 134 (strict mode refuses any float)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class ErrorMessage(BaseModel):
    detail: str = Field(description="What was wrong and what to do", examples=["unknown user_id 999999"])


class Because(BaseModel):
    movie_id: int = MovieId
    title: str = Title


class Recommendation(BaseModel):
    rank: int = Field(description="1 for the best recommendation", ge=1, examples=[1])
    movie_id: int = MovieId
    title: str = Title
    genres: list[str] = Genres
    predicted_rating: float = Field(
        description="Predicted stars (0.5 to 5); for popular fallbacks, the movie's mean rating",
        examples=[4.62],
    )
    score: float = Field(
        description="The model's ranking score: larger is recommended first (the list's order unless "
        "rank_by=rating); for popular fallbacks, the movie's number of ratings",
        examples=[0.87],
    )
    because: Because | None = Field(
        default=None,
        description="With explain=true: the movie the user rated 4 stars or more that this one is "
        "closest to in the model's movie vectors (cosine); null if the user rated none that high",
    )


class Recommendations(BaseModel):
    user_id: int = UserId
    model_version: str = ModelVersion
    source: Literal["model", "fold-in", "popular"] = Field(
        description="'model' for a user the model was trained on, 'fold-in' for a user known only "
        "through ratings stored since (vectors fitted to them on the fly), 'popular' for the "
        "fallback of an unknown user",
        examples=["model"],
    )
    recommendations: list[Recommendation] = Field(description="Best first; never a movie the user rated")


class Pair(BaseModel):
    # Strict: `true` or "7" is not an id. A whole float (7.0) is, as JSON Schema says.
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Annotated[int, BeforeValidator(_integral)] = UserId
    movie_id: Annotated[int, BeforeValidator(_integral)] = MovieId


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


RatedAt = Field(description="When the rating was stored (UTC)", examples=["2026-11-30T08:15:00.123456Z"])


def _half_stars(stars: float) -> float:
    """Exactly a half star (pydantic's multiple_of tolerates 4.500000000000001)."""
    if not valid_rating(stars):
        raise ValueError(f"must be {RATING_MIN} to {RATING_MAX} stars in half stars")
    return stars


Stars = Annotated[
    float,
    Field(
        ge=RATING_MIN,
        le=RATING_MAX,
        multiple_of=RATING_STEP,
        allow_inf_nan=False,
        description="Stars, 0.5 to 5 in half stars",
        examples=[4.5],
    ),
    AfterValidator(_half_stars),
]
# Ids of the feedback routes: positive and exact in JSON (at most 2**53 - 1).
FeedbackId = {"ge": 1, "le": MAX_ID}


BodyId = Annotated[
    int,
    Field(**FeedbackId, description="A movie of the catalogue", examples=[318]),
    BeforeValidator(_integral),
]


class RatedMovie(BaseModel):
    movie_id: int = MovieId
    title: str = Title
    genres: list[str] = Genres
    rating: float = Field(description="The user's own rating in stars", examples=[5.0])
    source: Literal["dataset", "feedback"] = Field(
        description="'dataset': from the data set the model was trained on; 'feedback': stored through "
        "this API (it replaces the data set's rating of the same movie)",
        examples=["feedback"],
    )
    rated_at: datetime | None = Field(
        description="When a stored rating was given (UTC); null for the data set's", examples=[None]
    )


class UserRatings(BaseModel):
    user_id: int = UserId
    ratings: list[RatedMovie] = Field(description="The user's highest-rated movies, best first")
    feedback: Literal["ok", "unavailable"] = Field(
        description="'unavailable' when the feedback database could not be reached: only the data set's "
        "ratings are listed",
        examples=["ok"],
    )


class RatingBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"rating": 4.5}]})

    rating: Stars


class RatingItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    movie_id: BodyId
    rating: Stars


class RatingsBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"ratings": [{"movie_id": 318, "rating": 4.5}, {"movie_id": 1, "rating": 3}]}]
        },
    )

    ratings: list[RatingItem] = Field(
        min_length=1,
        max_length=1000,
        description="1 to 1,000 ratings, each movie at most once; stored all together or not at all",
    )


class StoredRating(BaseModel):
    user_id: int = UserId
    movie_id: int = MovieId
    rating: float = Field(description="The stored rating in stars", examples=[4.5])
    rated_at: datetime = RatedAt


class StoredRatingOfMovie(BaseModel):
    movie_id: int = MovieId
    rating: float = Field(description="The stored rating in stars", examples=[4.5])
    rated_at: datetime = RatedAt


class StoredRatings(BaseModel):
    user_id: int = UserId
    ratings: list[StoredRatingOfMovie] = Field(description="What is stored now, in request order")


class Movie(BaseModel):
    movie_id: int = MovieId
    title: str = Title
    genres: list[str] = Genres
    ratings_count: int = Field(description="Ratings in the data set", ge=0, examples=[317])
    mean_rating: float | None = Field(description="Mean of those ratings in stars", examples=[4.43])


class MovieSearch(BaseModel):
    query: str | None = Field(
        description="The query as received; null when none was given", examples=["amelie"]
    )
    movies: list[Movie] = Field(
        description="Movies whose titles hold every word of the query, most-rated first (without a "
        "query: the most-rated movies)"
    )


class Status(BaseModel):
    status: str = Field(description="'ok', 'ready' or what the server is waiting for", examples=["ok"])
    model_version: str | None = Field(
        default=None, description="Served bundle, once loaded", examples=["20261129T055109519036Z-4350"]
    )
    database: Literal["ok", "unavailable"] | None = Field(
        default=None,
        description="Readiness only: the feedback database. 'unavailable' leaves readiness at 200 "
        "(reads and recommendations still work from the bundle) while writes answer 503",
        examples=["ok"],
    )


class ServedModel(Metadata):
    """`GET /model`: the served bundle's metadata, and which server process answered."""

    replica: str = Field(
        description="The replica that answered (REPLICA_NAME: by default its host, pod or container name)",
        examples=["api-7d9f8b6c5-x2l4q"],
    )
