"""`platform-bot db current | history | upgrade | downgrade` on both databases, through
the installed entry point: what each prints and its exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from engine.db import make_engine
from engine.migrate import head_revision, history

REVISIONS = [revision.id for revision in history()]


def db(command: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    entry_point = Path(sys.executable).parent / "platform-bot"
    return subprocess.run(
        [str(entry_point), "db", command],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_current_on_an_empty_database_says_to_upgrade(database_url: str, tmp_path: Path) -> None:
    done = db("current", database_url, tmp_path)

    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("no schema yet in ")
    assert f"head is {head_revision()}: run `platform-bot db upgrade`" in done.stdout


def test_current_never_creates_a_sqlite_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "bot.db"

    assert db("current", f"sqlite:///{missing}", tmp_path).returncode == 1
    assert db("history", f"sqlite:///{missing}", tmp_path).returncode == 0
    assert db("downgrade", f"sqlite:///{missing}", tmp_path).returncode == 1
    assert not missing.parent.exists()


def test_upgrade_then_current_is_head(database_url: str, tmp_path: Path) -> None:
    assert db("upgrade", database_url, tmp_path).returncode == 0

    done = db("current", database_url, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"{head_revision()} (head): ")


def test_history_lists_every_migration_and_marks_current_and_head(
    database_url: str, tmp_path: Path
) -> None:
    assert db("upgrade", database_url, tmp_path).returncode == 0
    assert db("downgrade", database_url, tmp_path).returncode == 0

    done = db("history", database_url, tmp_path)

    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == REVISIONS
    assert lines[-1].endswith("(head)")
    assert lines[-2].endswith("(current)")
    assert lines[0].startswith("0001  initial schema")


def test_downgrade_goes_back_one_step_at_a_time_to_nothing_and_up_again(
    database_url: str, tmp_path: Path
) -> None:
    assert db("upgrade", database_url, tmp_path).returncode == 0

    for newer, older in zip(REVISIONS[::-1], [*REVISIONS[-2::-1], None], strict=True):
        done = db("downgrade", database_url, tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout == (
            f"database schema downgraded from {newer} to {older or 'empty (no tables)'}\n"
        )
        current = db("current", database_url, tmp_path)
        assert current.returncode == 1
        assert current.stdout.startswith(f"{older}, head is" if older else "no schema yet")

    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    nothing = db("downgrade", database_url, tmp_path)
    assert nothing.returncode == 1
    assert nothing.stderr == (
        "platform-bot: the database has no schema; there is nothing to downgrade\n"
    )
    assert db("upgrade", database_url, tmp_path).returncode == 0
    assert db("current", database_url, tmp_path).returncode == 0


def test_a_schema_newer_than_this_version_is_named(database_url: str, tmp_path: Path) -> None:
    assert db("upgrade", database_url, tmp_path).returncode == 0
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    finally:
        engine.dispose()

    current = db("current", database_url, tmp_path)
    downgrade = db("downgrade", database_url, tmp_path)

    assert current.returncode == 1
    assert current.stdout.startswith("9999 is newer than this version knows")
    assert downgrade.returncode == 1
    assert "downgrade with the version that upgraded it" in downgrade.stderr


def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = "postgresql+psycopg://bot:hunter2@127.0.0.1:1/bot"
    for command in ("current", "history", "upgrade", "downgrade"):
        done = db(command, url, tmp_path)
        assert done.returncode == 2, command
        assert done.stderr.startswith("platform-bot: Cannot reach the database at ")
        assert done.stderr.count("\n") == 1
        assert "hunter2" not in done.stderr
