"""Alembic's environment: runs the migrations on the connection `app.feedback.db` hands over.

Only that way: the caller opens the connection, takes the migration lock and owns the
transaction (see `app.feedback.db.migrate`), so this file neither connects nor commits.
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run the migrations with `python -m app.feedback upgrade`, not the alembic command")

context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
