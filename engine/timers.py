"""Durable timers: "at T, do X", surviving restarts and replicas, firing exactly once.

A timer is a row: a `kind` (whose handler a feature registered with
`registry.timer(kind, handler)`), a `key` unique to what it is for (scheduling the same
key twice keeps the first), when it is due, and a small JSON payload. Scheduling and
cancelling happen in the caller's transaction (`schedule`, `cancel`), so a grant and the
timer that ends it are written together or not at all.

`Timers.fire_due` claims a due timer with one conditional UPDATE (on PostgreSQL the
candidate is first locked `FOR UPDATE SKIP LOCKED`, so replicas never wait on each other)
and a lease, calls its handler, and marks it fired. A handler does one thing that is
idempotent on the timer: it submits a Run through the one path with an idempotency key
derived from the timer (`Timer.idempotency_key`), or posts a message keyed by it. So if
a replica dies between the claim and the mark, the lease runs out, another replica fires
it again, and the Run engine finds the Run already there: the effect happens once.

A handler that raises is tried again later (backing off up to five minutes); after
`MAX_ATTEMPTS` the timer is marked failed and logged as an error.

Time comes from a `Clock`, injected: the bot uses the system clock; tests and the sandbox
use a `ShiftedClock` they move forward (`/advance 2h`), so nothing ever waits for real.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Index, Integer, String, Text, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine.db import Base, Database, new_id, utcnow
from engine.tasks import wait_any

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
"""A handler that failed this many times gives up; the timer is marked failed."""
MAX_BACKOFF_SECONDS = 300.0


class Clock(Protocol):
    """Where "now" comes from (timezone-aware UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return utcnow()


class ShiftedClock:
    """The real time plus an offset that only grows: `advance(timedelta(hours=2))` makes
    every timer due in the next two hours fire on the next pass (tests, the sandbox)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        self.offset += delta


class TimerRow(Base):
    """One "at due_at, do kind(payload)"; state pending -> firing -> fired (or cancelled,
    or failed after MAX_ATTEMPTS)."""

    __tablename__ = "timers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None]
    fired_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_timers_state_due", "state", "due_at"),)


@dataclass(frozen=True)
class Timer:
    """What a handler is given: the timer as scheduled."""

    id: str
    kind: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    attempts: int

    @property
    def idempotency_key(self) -> str:
        """The idempotency key of the one Run (or message) this timer causes."""
        return f"timer:{self.id}"


TimerHandler = Callable[[Timer], Awaitable[None]]


def schedule(
    session: Session,
    *,
    kind: str,
    key: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
) -> bool:
    """In the caller's transaction: fire `kind` at `due_at`, unless a timer with this key
    exists already (any state). True if it was scheduled now."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    inserted = session.execute(
        dialect.insert(TimerRow)
        .values(
            id=new_id(),
            kind=kind,
            key=key,
            due_at=due_at,
            payload=payload or {},
            state="pending",
            attempts=0,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(TimerRow.id)
    ).scalar()
    return inserted is not None


def cancel(session: Session, keys: Iterable[str]) -> int:
    """In the caller's transaction: cancel the pending timers with these keys; how many.
    A timer already firing is not stopped (its handler must check what it finds)."""
    wanted = list(keys)
    if not wanted:
        return 0
    done = session.execute(
        update(TimerRow)
        .where(TimerRow.key.in_(wanted), TimerRow.state == "pending")
        .values(state="cancelled")
    )
    return int(getattr(done, "rowcount", 0) or 0)


def pending(session: Session, *, kind: str | None = None) -> list[Timer]:
    """Timers not yet fired, soonest first (for listings and tests)."""
    statement = select(TimerRow).where(TimerRow.state.in_(("pending", "firing")))
    if kind is not None:
        statement = statement.where(TimerRow.kind == kind)
    return [_timer(row) for row in session.execute(statement.order_by(TimerRow.due_at)).scalars()]


class Timers:
    """Fires due timers for the kinds registered here; one instance per process."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        worker_id: str,
        lease: timedelta = timedelta(seconds=60),
        poll_interval: float = 1.0,
    ) -> None:
        self.db, self.clock, self.worker_id = db, clock, worker_id
        self.lease, self.poll_interval = lease, poll_interval
        self.handlers: dict[str, TimerHandler] = {}
        self.wakeup = asyncio.Event()

    def register(self, kind: str, handler: TimerHandler) -> None:
        if kind in self.handlers:
            raise RuntimeError(f"timer kind {kind!r} is registered twice")
        self.handlers[kind] = handler

    async def loop(self, stop: asyncio.Event) -> None:
        """Fire due timers until `stop` is set (run by engine.tasks)."""
        while not stop.is_set():
            try:
                await self.fire_due()
            except Exception:
                log.exception("timer pass failed; trying again")
            self.wakeup.clear()
            await wait_any(stop, self.wakeup, seconds=self.poll_interval)

    async def fire_due(self, *, limit: int = 100) -> int:
        """Fire every timer due now (at most `limit`); how many fired."""
        fired = 0
        while fired < limit:
            timer = await self.db.run(self._claim)
            if timer is None:
                break
            await self._fire(timer)
            fired += 1
        return fired

    def _claim(self, session: Session) -> Timer | None:
        if not self.handlers:
            return None
        now = self.clock.now()
        claimable = or_(
            (TimerRow.state == "pending") & (TimerRow.due_at <= now),
            (TimerRow.state == "firing") & (TimerRow.lease_until < now),
        )
        mine = TimerRow.kind.in_(sorted(self.handlers))
        candidates = select(TimerRow.id).where(claimable, mine).order_by(TimerRow.due_at).limit(1)
        if self.db.is_postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        timer_id = session.execute(candidates).scalar()
        if timer_id is None:
            return None
        claimed = session.execute(
            update(TimerRow)
            .where(TimerRow.id == timer_id, claimable)
            .values(
                state="firing",
                claimed_by=self.worker_id,
                lease_until=now + self.lease,
                attempts=TimerRow.attempts + 1,
            )
        )
        if not getattr(claimed, "rowcount", 0):
            return None
        return _timer(session.get_one(TimerRow, timer_id))

    async def _fire(self, timer: Timer) -> None:
        try:
            await self.handlers[timer.kind](timer)
        except Exception as exc:
            log.exception(
                "timer handler failed", extra={"timer": timer.key, "attempts": timer.attempts}
            )
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            await self.db.run(lambda s: self._failed(s, timer, reason))
            return
        await self.db.run(lambda s: self._mark(s, timer, {"state": "fired", "fired_at": utcnow()}))
        log.info("timer fired", extra={"timer": timer.key, "kind": timer.kind})

    def _failed(self, session: Session, timer: Timer, reason: str) -> None:
        if timer.attempts >= MAX_ATTEMPTS:
            log.error("timer gave up", extra={"timer": timer.key, "error": reason})
            self._mark(session, timer, {"state": "failed", "error": reason})
            return
        backoff = min(2.0**timer.attempts, MAX_BACKOFF_SECONDS)
        values = {
            "state": "pending",
            "error": reason,
            "due_at": self.clock.now() + timedelta(seconds=backoff),
        }
        self._mark(session, timer, values)

    def _mark(self, session: Session, timer: Timer, values: dict[str, Any]) -> None:
        """Finish our claim (conditional: a replica that took over after our lease ran
        out finishes it instead)."""
        session.execute(
            update(TimerRow)
            .where(
                TimerRow.id == timer.id,
                TimerRow.state == "firing",
                TimerRow.claimed_by == self.worker_id,
            )
            .values(claimed_by=None, lease_until=None, **values)
        )


def _timer(row: TimerRow) -> Timer:
    return Timer(
        id=row.id,
        kind=row.kind,
        key=row.key,
        due_at=row.due_at,
        payload=dict(row.payload or {}),
        attempts=row.attempts,
    )


__all__ = [
    "Clock",
    "ShiftedClock",
    "SystemClock",
    "Timer",
    "TimerHandler",
    "TimerRow",
    "Timers",
    "cancel",
    "pending",
    "schedule",
]
