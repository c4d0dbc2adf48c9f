"""`platform-bot audit export --since 2026-12-01 [--until ...]`: the audit log as JSON
lines on stdout, oldest first, for a SIEM. One object per entry: `at` (ISO 8601, UTC),
`actor`, `event`, `service`, `environment`, `run_id`, `request_id`, `detail`.

Exit codes: 0 written (also when empty), 2 a bad time or no database to read.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy import select

from app.db_commands import _connect
from app.systems import StartupError
from engine.db import AuditRow

BATCH = 1000


def parse_time(text: str) -> datetime:
    """An ISO date or date-time; UTC unless it says."""
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def export(url: str, *, since: str, until: str | None, out: TextIO = sys.stdout) -> int:
    try:
        start = parse_time(since)
        end = parse_time(until) if until else None
    except ValueError:
        print(
            "platform-bot: --since/--until take an ISO date or time, e.g. 2026-12-01 or "
            "2026-12-01T14:00",
            file=sys.stderr,
        )
        return 2
    try:
        db = _connect(url)
    except StartupError as exc:
        print(f"platform-bot: {exc}", file=sys.stderr)
        return 2
    if db is None:
        print(
            "platform-bot: no database at DATABASE_URL (nothing was ever recorded)", file=sys.stderr
        )
        return 2
    try:
        last_id = 0
        while True:
            statement = (
                select(AuditRow)
                .where(AuditRow.id > last_id, AuditRow.at >= start)
                .order_by(AuditRow.id)
                .limit(BATCH)
            )
            if end is not None:
                statement = statement.where(AuditRow.at < end)
            with db.session() as session:
                rows = list(session.execute(statement).scalars())
                for row in rows:
                    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
                    out.write(
                        json.dumps(
                            {
                                "at": at.isoformat(),
                                "actor": row.actor,
                                "event": row.event,
                                "service": row.service,
                                "environment": row.environment,
                                "run_id": row.run_id,
                                "request_id": row.request_id,
                                "detail": row.detail,
                            },
                            sort_keys=True,
                            default=str,
                        )
                        + "\n"
                    )
            if len(rows) < BATCH:
                return 0
            last_id = rows[-1].id
    finally:
        db.dispose()
