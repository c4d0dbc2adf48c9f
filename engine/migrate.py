"""Schema migrations with Alembic, driven from code (no alembic.ini to find).

`platform-bot db upgrade` calls `upgrade`; the sandbox and SQLite databases upgrade
themselves at start-up. On PostgreSQL several replicas may start at once, so the
upgrade holds an advisory lock. `db downgrade` goes back one revision (the way back from
a bad upgrade, with the previous image), `db current` and `db history` only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x706C6174  # "plat"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@dataclass(frozen=True)
class Revision:
    """One migration: its id, the one before it, and the first line of its docstring."""

    id: str
    down: str | None
    summary: str


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; safe to call from several processes at once."""
    config = alembic_config()
    with engine.begin() as connection:
        _lock(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade_one(engine: Engine) -> str | None:
    """Undo the newest applied migration; return the revision the schema is at now.

    Raises LookupError when there is nothing to undo (no schema, or already empty).
    """
    config = alembic_config()
    with engine.begin() as connection:
        _lock(connection)
        current = MigrationContext.configure(connection).get_current_revision()
        if current is None:
            raise LookupError("the database has no schema; there is nothing to downgrade")
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
        return MigrationContext.configure(connection).get_current_revision()


def history() -> list[Revision]:
    """Every migration, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = [
        Revision(
            id=str(rev.revision),
            down=str(rev.down_revision) if rev.down_revision else None,
            summary=(rev.doc or "").strip().splitlines()[0] if rev.doc else "",
        )
        for rev in script.walk_revisions()
    ]
    return revisions[::-1]


def _lock(connection: Connection) -> None:
    """On PostgreSQL, one schema change at a time across every replica and operator."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
