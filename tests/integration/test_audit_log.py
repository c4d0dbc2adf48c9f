"""The audit log on both databases: `/platform audit`'s filters and pages in SQL, and
`platform-bot audit export --since` through the installed entry point (JSON lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.systems import open_database
from engine.audit import DatabaseAuditLog
from kernel.ids import ServiceName, SlackUserId
from kernel.ports.platform import AuditEntry

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def entries() -> list[AuditEntry]:
    made = []
    for i in range(45):
        made.append(
            AuditEntry(
                at=T0 + timedelta(hours=i),
                actor=SlackUserId("U02BOB" if i % 3 == 0 else "U01ALICE"),
                event="secret.written" if i % 5 == 0 else "run.done",
                service=ServiceName("checkout" if i % 2 == 0 else "refunds"),
                detail={"n": i},
            )
        )
    return made


async def test_filters_and_pages_in_sql(database_url: str) -> None:
    db = open_database(database_url, auto_upgrade=True)
    try:
        log = DatabaseAuditLog(db)
        for entry in entries():
            await log.record(entry)

        page1 = await log.recent(limit=20)
        page3 = await log.recent(limit=20, offset=40)
        assert [e.detail["n"] for e in page1] == list(range(44, 24, -1))
        assert [e.detail["n"] for e in page3] == [4, 3, 2, 1, 0]
        bob = await log.recent(actor=SlackUserId("U02BOB"), limit=100)
        assert {e.detail["n"] % 3 for e in bob} == {0} and len(bob) == 15
        secrets = await log.recent(event="secret", service=ServiceName("checkout"), limit=100)
        assert [e.detail["n"] for e in secrets] == [40, 30, 20, 10, 0]
        window = await log.recent(
            since=T0 + timedelta(hours=10), until=T0 + timedelta(hours=12), limit=100
        )
        assert [e.detail["n"] for e in window] == [11, 10]
        assert await log.recent(event="secret_", limit=5) == []  # `_` is not a wildcard
    finally:
        db.dispose()


def export(url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    entry_point = Path(sys.executable).parent / "platform-bot"
    return subprocess.run(
        [str(entry_point), "audit", "export", *args],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_export_writes_json_lines_oldest_first(database_url: str, tmp_path: Path) -> None:
    db = open_database(database_url, auto_upgrade=True)
    try:
        log = DatabaseAuditLog(db)
        for entry in entries():
            await log.record(entry)
    finally:
        db.dispose()

    done = export(
        database_url, tmp_path, "--since", "2026-12-02T18:00", "--until", "2026-12-02T21:00"
    )

    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["detail"]["n"] for line in lines] == [33, 34, 35]
    assert lines[0]["at"].startswith("2026-12-02T18:00:00")
    assert set(lines[0]) == {
        "at",
        "actor",
        "event",
        "service",
        "environment",
        "run_id",
        "request_id",
        "detail",
    }

    bad = export(database_url, tmp_path, "--since", "last tuesday")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "take an ISO date or time" in bad.stderr
