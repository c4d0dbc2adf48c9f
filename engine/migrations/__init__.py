"""Alembic migrations; `platform-bot db upgrade` applies them (see engine.migrate)."""
