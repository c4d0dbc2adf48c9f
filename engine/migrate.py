"""Schema migrations with Alembic, driven from code (no alembic.ini to find).

`platform-bot db upgrade` calls `upgrade`; the sandbox and SQLite databases upgrade
themselves at start-up. On PostgreSQL several replicas may start at once, so the
upgrade holds an advisory lock. `db downgrade` goes back one revision (the way back from
a bad upgrade, with the previous image), `db current` and `db history` only read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (~0.3 s of imports) is loaded only to migrate or to read the history: a bot
# starting on a current schema learns so from `schema_is_current`, without it.

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x706C6174  # "plat"


def alembic_config() -> Config:
    from alembic.config import Config

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
    from alembic import command

    config = alembic_config()
    with engine.begin() as connection:
        _lock(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade_one(engine: Engine) -> str | None:
    """Undo the newest applied migration; return the revision the schema is at now.

    Raises LookupError when there is nothing to undo (no schema, or already empty).
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext

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
    from alembic.script import ScriptDirectory

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
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


_ASSIGNED = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def schema_is_current(engine: Engine) -> bool:
    """True if the database is at the one head of our migrations, known without Alembic.

    The head is read from the migration files' `revision` / `down_revision` lines; the
    database's revision from the `alembic_version` table Alembic keeps. Anything unusual
    (no table, several heads, a line this cannot read) answers False, and the caller asks
    Alembic itself, so this can only save time, never skip a migration.
    """
    head = _head_from_files()
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except SQLAlchemyError:
        return False
    return [row[0] for row in rows] == [head]


def _head_from_files() -> str | None:
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        if path.name == "__init__.py":
            continue
        found = {m.group(1): m.group(2) for m in _ASSIGNED.finditer(path.read_text())}
        revision, down = found.get("revision"), found.get("down_revision")
        if revision is None or down is None:
            return None
        value = _literal(revision)
        if value is None:
            return None
        revisions.add(value)
        if down != "None":
            parent = _literal(down)
            if parent is None:  # a merge (a tuple) or something else: let Alembic decide
                return None
            parents.add(parent)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _literal(value: str) -> str | None:
    match = re.fullmatch(r"""(["'])(\w+)\1""", value)
    return match.group(2) if match else None
