"""Feedback: ratings written through the API, kept in a database (SQLite or PostgreSQL).

`store.FeedbackStore` is the one way in; `db` sets up engines and migrations; `schema` describes
the table; `migrations/` changes it. Nothing here knows about models or scoring.
"""

from app.feedback.store import ExportedRatings, FeedbackStore, FeedbackUnavailable, StoredRating

__all__ = ["ExportedRatings", "FeedbackStore", "FeedbackUnavailable", "StoredRating"]
