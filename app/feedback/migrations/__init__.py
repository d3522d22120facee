"""Alembic migrations of the feedback database (applied by `app.feedback.db.migrate`)."""
