"""Fixtures every test shares: a clean environment and a database on each backend.

Database tests take the `database_url` fixture and so run twice: on a fresh SQLite
file and on a fresh PostgreSQL database created on the machine's server
(127.0.0.1:5432, trust auth; override with PLATFORM_BOT_TEST_POSTGRES).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.settings import SECRET_SETTINGS, Settings

POSTGRES_ADMIN_URL = os.environ.get(
    "PLATFORM_BOT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SAMPLE_CONFIG = Path(__file__).parent.parent / "sandbox" / "app" / "sample" / "platform.yml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's Slack tokens, database or config."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name in SECRET_SETTINGS:
        monkeypatch.delenv(f"{name.upper()}_FILE", raising=False)
    for name in ("KUBECONFIG",):
        monkeypatch.delenv(name, raising=False)


def _postgres_database() -> Iterator[str]:
    name = f"pbtest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is needed for this test and is not reachable at {POSTGRES_ADMIN_URL}: "
            f"{str(exc).splitlines()[0]}. Start it (see README) or set PLATFORM_BOT_TEST_POSTGRES."
        )
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema yet): a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'platform-bot.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database, for tests about several processes sharing one."""
    yield from _postgres_database()
