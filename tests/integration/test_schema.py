"""Migrations: they build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import app.bootstrap  # noqa: F401 - every feature's tables join Base.metadata
from engine.db import Base, make_engine
from engine.migrate import current_revision, head_revision, upgrade


def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        assert current_revision(engine) == head_revision()
        upgrade(engine)  # a second upgrade is a no-op
        assert set(inspect(engine).get_table_names()) >= {
            "runs",
            "run_steps",
            "approvals",
            "approval_votes",
            "audit_events",
            "slack_outbox",
            "slack_messages",
            "processed_requests",
        }
    finally:
        engine.dispose()


def test_db_upgrade_command(database_url: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database schema at revision {head_revision()}"


def test_serving_an_old_postgres_schema_is_refused(postgres_url: str) -> None:
    from app.bootstrap import StartupError, open_database

    try:
        open_database(postgres_url)
    except StartupError as exc:
        assert "Run `platform-bot db upgrade` first" in str(exc)
    else:
        raise AssertionError("an empty PostgreSQL schema was accepted")
