"""The database: tables, engine, and one way to run a unit of work off the event loop.

SQLite (a file, the default) for one process; PostgreSQL when several replicas share
the work. SQLAlchemy's engine is synchronous; `Database.run` executes a function in a
worker thread so the event loop never blocks on I/O.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the zone on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use engine.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


ACTIVE_LOCK_WHERE = "lock_key IS NOT NULL AND state IN ('waiting_approval', 'pending', 'running')"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class RunRow(Base):
    """A durable execution of one Action. `state` moves pending -> running -> done/failed."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    action_kind: Mapped[str] = mapped_column(String(80))
    action: Mapped[dict[str, Any]]
    fingerprint: Mapped[str] = mapped_column(String(64))
    service: Mapped[str | None] = mapped_column(String(80), index=True)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    requested_by: Mapped[str] = mapped_column(String(40))
    reply_channel: Mapped[str | None] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(40))
    flags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    environment: Mapped[str | None] = mapped_column(String(80))
    lock_key: Mapped[str | None] = mapped_column(String(200))
    """Runs sharing a lock key never overlap while waiting, pending or running."""

    __table_args__ = (
        Index("ix_runs_state_created", "state", "created_at"),
        Index(
            "uq_runs_active_lock",
            "lock_key",
            unique=True,
            postgresql_where=text(ACTIVE_LOCK_WHERE),
            sqlite_where=text(ACTIVE_LOCK_WHERE),
        ),
    )


class RunStepRow(Base):
    """A checkpoint: one step of a Run and how it ended, so a restart skips what is done."""

    __tablename__ = "run_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(20), default="pending")
    output: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    detail: Mapped[str | None] = mapped_column(Text)
    """Live detail a running step reports (e.g. replicas updated / ready)."""
    title: Mapped[str | None] = mapped_column(String(200))
    """What the progress message calls the step, stored at submit (no re-planning)."""

    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_run_steps_run_name"),)


class RegisteredServiceRow(Base):
    """A service added at run time (new-service); merged into the catalog on start-up."""

    __tablename__ = "catalog_services"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    definition: Mapped[dict[str, Any]]
    registered_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditRow(Base):
    """Append-only: who did what, when, to which service, and in which request."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(80))
    service: Mapped[str | None] = mapped_column(String(80), index=True)
    environment: Mapped[str | None] = mapped_column(String(80))
    run_id: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxRow(Base):
    """A Slack Web API call waiting to be made. Nothing is sent except through here.

    `message_key` names a message we post so later updates and thread replies can
    refer to it before Slack has given it a `ts`.
    """

    __tablename__ = "slack_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(80), index=True)
    method: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]]
    message_key: Mapped[str | None] = mapped_column(String(120))
    thread_key: Mapped[str | None] = mapped_column(String(120))
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_state_id", "state", "id"),
        # updates and thread replies look up pending rows of one message
        Index("ix_outbox_message_key", "message_key"),
        Index("ix_outbox_thread_key", "thread_key"),
    )


class SlackMessageRow(Base):
    """Where a message we posted landed: message_key -> (channel, ts)."""

    __tablename__ = "slack_messages"

    message_key: Mapped[str] = mapped_column(String(120), primary_key=True)
    channel: Mapped[str] = mapped_column(String(40))
    ts: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProcessedRequestRow(Base):
    """Ids of Slack deliveries already handled (event_id, envelope ids), for dedup."""

    __tablename__ = "processed_requests"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class DatabaseUnavailable(Exception):
    """The database cannot be reached; the user is asked to try again."""


class Database:
    """An engine plus `run(fn)`, which executes `fn(session)` in a thread and commits."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def session(self) -> Session:
        return self._sessions()

    def run_sync(self, fn: Callable[[Session], T]) -> T:
        try:
            with self._sessions.begin() as session:
                return fn(session)
        except (OperationalError, DBAPIError) as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise DatabaseUnavailable(str(exc.orig).strip().splitlines()[0]) from exc
            raise

    async def run(self, fn: Callable[[Session], T]) -> T:
        """Run `fn(session)` in one transaction, off the event loop."""
        return await asyncio.to_thread(self.run_sync, fn)

    async def ping(self) -> bool:
        def select_one(session: Session) -> bool:
            session.execute(text("SELECT 1"))
            return True

        try:
            return await self.run(select_one)
        except DatabaseUnavailable:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs for our concurrency."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        connect_args={"connect_timeout": 5},
    )
