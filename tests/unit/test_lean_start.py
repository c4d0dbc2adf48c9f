"""Start-up imports only what the configured systems need: no Alembic on a current
schema, no SDK of an unconfigured system (issue 18, bench/start.py measures the time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.db import Database
from engine.migrate import _head_from_files, head_revision, schema_is_current, upgrade

HEAVY = ("alembic", "kubernetes", "hvac", "gitlab", "prometheus_api_client", "jinja2")


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert _head_from_files() is not None
    assert _head_from_files() == head_revision()


def test_schema_is_current_only_at_the_head(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    try:
        assert not schema_is_current(db.engine)  # no alembic_version table yet
        upgrade(db.engine)
        assert schema_is_current(db.engine)
        with db.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
        assert not schema_is_current(db.engine)
    finally:
        db.dispose()


def test_building_the_bot_imports_no_sdk_of_an_unconfigured_system() -> None:
    code = (
        "import sys, app.bootstrap, app.cli, app.systems\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""
