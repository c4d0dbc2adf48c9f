"""Alembic environment: uses the connection engine.migrate hands it, never reads the environment."""

from __future__ import annotations

from alembic import context

from engine.db import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite can only ALTER through table copies
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
