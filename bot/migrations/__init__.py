"""Alembic migrations; `platform-bot db upgrade` applies them (see bot.migrate)."""
