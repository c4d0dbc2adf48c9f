"""Durable timers (engine.timers): due ones fire once, across replicas and restarts;
a handler that fails is tried again; time is injected, so nothing here waits."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

from engine.db import Database
from engine.timers import ShiftedClock, Timer, TimerRow, Timers, cancel, pending, schedule


def _timers(db: Database, clock: ShiftedClock, worker: str, fired: list[Timer]) -> Timers:
    timers = Timers(db, clock=clock, worker_id=worker)

    async def handler(timer: Timer) -> None:
        fired.append(timer)

    timers.register("test.ring", handler)
    return timers


async def _schedule(db: Database, clock: ShiftedClock, key: str, after: timedelta) -> bool:
    return await db.run(
        lambda s: schedule(
            s, kind="test.ring", key=key, due_at=clock.now() + after, payload={"k": key}
        )
    )


async def test_a_timer_fires_when_due_and_only_once(db: Database) -> None:
    clock, fired = ShiftedClock(), []
    timers = _timers(db, clock, "one", fired)
    assert await _schedule(db, clock, "a", timedelta(hours=2))
    assert not await _schedule(db, clock, "a", timedelta(minutes=1))  # the key is taken
    assert await timers.fire_due() == 0
    clock.advance(timedelta(hours=1, minutes=59))
    assert await timers.fire_due() == 0
    clock.advance(timedelta(minutes=1))
    assert await timers.fire_due() == 1
    assert await timers.fire_due() == 0
    assert [t.payload for t in fired] == [{"k": "a"}]
    assert fired[0].idempotency_key == f"timer:{fired[0].id}"
    assert await db.run(lambda s: pending(s)) == []


async def test_replicas_racing_fire_each_timer_once(db: Database) -> None:
    clock, fired = ShiftedClock(), []
    replicas = [_timers(db, clock, f"replica-{n}", fired) for n in range(4)]
    for n in range(20):
        await _schedule(db, clock, f"t{n}", timedelta(minutes=5))
    clock.advance(timedelta(minutes=5))
    counts = await asyncio.gather(*(r.fire_due() for r in replicas))
    assert sum(counts) == 20
    assert sorted(t.key for t in fired) == sorted(f"t{n}" for n in range(20))


async def test_a_replica_that_died_mid_fire_is_taken_over_after_its_lease(db: Database) -> None:
    clock, fired = ShiftedClock(), []
    dead = Timers(db, clock=clock, worker_id="dead", lease=timedelta(minutes=1))

    async def dies(timer: Timer) -> None:
        raise asyncio.CancelledError  # the process ends mid-handler

    dead.register("test.ring", dies)
    await _schedule(db, clock, "x", timedelta(0))
    with contextlib.suppress(asyncio.CancelledError):
        await dead.fire_due()
    survivor = _timers(db, clock, "survivor", fired)
    assert await survivor.fire_due() == 0  # still leased to the dead one
    clock.advance(timedelta(minutes=2))
    assert await survivor.fire_due() == 1
    assert [t.key for t in fired] == ["x"]
    assert fired[0].attempts == 2  # the handler saw it was a second attempt


async def test_timers_survive_a_restart(db: Database, database_url: str) -> None:
    clock = ShiftedClock()
    await _schedule(db, clock, "later", timedelta(hours=8))
    db.dispose()
    reopened, fired = Database(database_url), []
    try:
        clock.advance(timedelta(hours=8))
        assert await _timers(reopened, clock, "next-process", fired).fire_due() == 1
        assert [t.key for t in fired] == ["later"]
    finally:
        reopened.dispose()


async def test_a_failing_handler_is_retried_later_and_cancelled_timers_never_fire(
    db: Database,
) -> None:
    clock, calls = ShiftedClock(), []
    timers = Timers(db, clock=clock, worker_id="w")

    async def flaky(timer: Timer) -> None:
        calls.append(timer.attempts)
        if timer.attempts == 1:
            raise RuntimeError("the database blinked")

    timers.register("test.ring", flaky)
    await _schedule(db, clock, "flaky", timedelta(0))
    await _schedule(db, clock, "never", timedelta(minutes=1))
    assert await db.run(lambda s: cancel(s, ["never", "unknown"])) == 1
    await timers.fire_due()
    assert calls == [1]
    row = await db.run(lambda s: s.query(TimerRow).filter_by(key="flaky").one())
    assert row.state == "pending" and "blinked" in (row.error or "")
    clock.advance(timedelta(minutes=5))
    await timers.fire_due()
    assert calls == [1, 2]
    states = await db.run(lambda s: {r.key: r.state for r in s.query(TimerRow)})
    assert states == {"flaky": "fired", "never": "cancelled"}


async def test_kinds_this_process_does_not_know_are_left_for_one_that_does(db: Database) -> None:
    clock, fired = ShiftedClock(), []
    await db.run(lambda s: schedule(s, kind="test.other", key="o", due_at=clock.now()))
    assert await _timers(db, clock, "w", fired).fire_due() == 0
    assert [t.key for t in await db.run(lambda s: pending(s))] == ["o"]
