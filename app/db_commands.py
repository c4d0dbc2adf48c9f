"""`platform-bot db current | history | upgrade | downgrade`: the bot's own schema.

`upgrade` brings $DATABASE_URL to this version's newest migration (run it before rolling
out a new version); `downgrade` undoes the newest applied one, one step at a time: the
way back from a bad upgrade is `db downgrade` with the *new* image (which knows how to
undo its migration), then rolling back the Deployment. `current` exits 0 only when the
schema is this version's head, so a script or an init container can wait for it.

Exit codes: 0 done (or current), 1 not current or nothing to undo, 2 cannot reach the
database. Every failure is one line on stderr, with the password hidden.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy.engine import make_url

from app.systems import StartupError, open_database, safe_url
from engine.db import Database
from engine.migrate import current_revision, downgrade_one, head_revision, history


def _connect(url: str) -> Database | None:
    """The database, checked; None for a SQLite file that does not exist (so merely
    asking never creates one)."""
    try:
        parsed = make_url(url)
    except Exception:
        raise StartupError("DATABASE_URL is not a database URL") from None
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not Path(path).exists():
            return None
    return open_database(url, auto_upgrade=False, check_schema=False)


def _fail(message: str, code: int) -> int:
    print(f"platform-bot: {message}", file=sys.stderr)
    return code


def db_current(url: str) -> int:
    """Print the schema's revision; 0 when it is this version's head."""
    try:
        db = _connect(url)
    except StartupError as exc:
        return _fail(str(exc), 2)
    head = head_revision()
    current = None
    if db is not None:
        current = current_revision(db.engine)
        db.dispose()
    known = {revision.id: revision for revision in history()}
    if current is not None and current == head:
        print(f"{current} (head): {known[current].summary}")
        return 0
    if current is None:
        print(f"no schema yet in {safe_url(url)}; head is {head}: run `platform-bot db upgrade`")
    elif current not in known:
        print(
            f"{current} is newer than this version knows (head is {head}): a newer "
            "platform-bot upgraded it; run that version's `platform-bot db downgrade`"
        )
    else:
        print(f"{current}, head is {head}: run `platform-bot db upgrade`")
    return 1


def db_history(url: str) -> int:
    """Every migration this version has, oldest first, marking the schema's own."""
    try:
        db = _connect(url)
    except StartupError as exc:
        return _fail(str(exc), 2)
    current = None
    if db is not None:
        current = current_revision(db.engine)
        db.dispose()
    head = head_revision()
    for revision in history():
        marks = [
            m
            for m, on in (("head", revision.id == head), ("current", revision.id == current))
            if on
        ]
        suffix = f"  ({', '.join(marks)})" if marks else ""
        print(f"{revision.id}  {revision.summary}{suffix}")
    return 0


def db_upgrade(url: str) -> int:
    """Apply every migration not yet applied."""
    try:
        db = open_database(url, auto_upgrade=True)
    except StartupError as exc:
        return _fail(str(exc), 2)
    print(f"database schema at revision {current_revision(db.engine)}")
    db.dispose()
    return 0


def db_downgrade(url: str) -> int:
    """Undo the newest applied migration (one step)."""
    try:
        db = _connect(url)
    except StartupError as exc:
        return _fail(str(exc), 2)
    if db is None:
        return _fail("the database has no schema; there is nothing to downgrade", 1)
    try:
        before = current_revision(db.engine)
        if before is not None and before not in {r.id for r in history()}:
            return _fail(
                f"{before} is newer than this version knows; downgrade with the version "
                "that upgraded it",
                1,
            )
        after = downgrade_one(db.engine)
    except LookupError as exc:
        return _fail(str(exc), 1)
    finally:
        db.dispose()
    print(f"database schema downgraded from {before} to {after or 'empty (no tables)'}")
    return 0
