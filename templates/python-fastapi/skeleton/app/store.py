"""Where items live: Postgres when DATABASE_URL is set, or DATABASE_URL_FILE names a file
holding it (in the cluster: written by the Vault Agent, with a short-lived login it renews
and replaces; the file is read again for every connection), otherwise memory (tests, a
laptop).

psycopg is imported only for Postgres, so the in-memory path needs nothing installed
beyond FastAPI.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    id: int
    name: str
    created_at: datetime


class Store(Protocol):
    def ping(self) -> None: ...

    def list(self) -> list[Item]: ...

    def add(self, name: str) -> Item: ...


class MemoryStore:
    """Items in a list: lost on restart, never shared between replicas."""

    def __init__(self) -> None:
        self._items: list[Item] = []
        self._lock = threading.Lock()

    def ping(self) -> None:
        return None

    def list(self) -> list[Item]:
        with self._lock:
            return list(self._items)

    def add(self, name: str) -> Item:
        with self._lock:
            item = Item(id=len(self._items) + 1, name=name, created_at=datetime.now(UTC))
            self._items.append(item)
            return item


class PostgresStore:
    """Items in the `items` table, created on first use; one connection per call."""

    def __init__(self, url: str | Callable[[], str]) -> None:
        self._url = url
        self._table_ready = False

    def _connect(self) -> Any:
        import psycopg

        url = self._url() if callable(self._url) else self._url
        conn = psycopg.connect(url, connect_timeout=5)
        if not self._table_ready:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS items ("
                "id SERIAL PRIMARY KEY, name TEXT NOT NULL, "
                "created_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            conn.commit()
            self._table_ready = True
        return conn

    def ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1")

    def list(self) -> list[Item]:
        with self._connect() as conn:
            rows = conn.execute("SELECT id, name, created_at FROM items ORDER BY id").fetchall()
        return [Item(*row) for row in rows]

    def add(self, name: str) -> Item:
        with self._connect() as conn:
            row = conn.execute(
                "INSERT INTO items (name) VALUES (%s) RETURNING id, name, created_at", (name,)
            ).fetchone()
        return Item(*row)


def store_from_env(env: Mapping[str, str]) -> Store:
    url = env.get("DATABASE_URL")
    if url:
        return PostgresStore(url)
    url_file = env.get("DATABASE_URL_FILE")
    if url_file and os.path.exists(url_file):
        return PostgresStore(lambda: _read(url_file))
    log.warning("DATABASE_URL is not set: items are kept in memory and lost on restart")
    return MemoryStore()


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        return file.read().strip()
