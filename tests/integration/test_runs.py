"""The Run engine on a real database (SQLite and PostgreSQL): exactly once, step by step.

Runs are executed with `run_next()` where one step at a time is enough, and with
`work()` where crashes, recovery and concurrency are the point. The last tests start
real worker processes on one PostgreSQL database (tests/integration/run_worker.py).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine.db import AuditRow, Database, OutboxRow, RunRow, RunStepRow
from engine.metrics import Metrics
from engine.migrate import upgrade
from engine.outbox import Outbox
from engine.run_states import RunLocked, UnknownAction
from engine.runs import RunEngine
from kernel.actions import Executor
from kernel.errors import ChangeRefused
from kernel.ids import RunId, SlackChannelId, SlackUserId
from tests.integration.conftest import TOUCH_STEPS, Recorder, Touch, TouchExecutor

ALICE = SlackUserId("U01ALICE")
BOB = SlackUserId("U02BOB")
PAYMENTS = SlackChannelId("C01PAYMENTS")
STEP_NAMES = [name for name, _ in TOUCH_STEPS]
WORKER_SCRIPT = Path(__file__).with_name("run_worker.py")


def make_engine(
    db: Database,
    executors: Iterable[Executor],
    *,
    worker_id: str = "w1",
    lease: timedelta = timedelta(seconds=5),
    concurrency: int = 4,
) -> RunEngine:
    return RunEngine(
        db,
        Outbox(db),
        Metrics(),
        executors,
        worker_id=worker_id,
        lease=lease,
        concurrency=concurrency,
        poll_interval=0.02,
    )


async def run_row(db: Database, run_id: str) -> RunRow:
    return await db.run(lambda s: s.get_one(RunRow, run_id))


async def step_rows(db: Database, run_id: str) -> list[RunStepRow]:
    query = select(RunStepRow).where(RunStepRow.run_id == run_id).order_by(RunStepRow.position)
    return await db.run(lambda s: list(s.scalars(query)))


async def audit_rows(db: Database, run_id: str) -> list[AuditRow]:
    query = select(AuditRow).where(AuditRow.run_id == run_id).order_by(AuditRow.id)
    return await db.run(lambda s: list(s.scalars(query)))


async def outbox_rows(db: Database) -> list[OutboxRow]:
    return await db.run(lambda s: list(s.scalars(select(OutboxRow).order_by(OutboxRow.id))))


async def count(db: Database, model: Any, *where: Any) -> int:
    query = select(func.count()).select_from(model).where(*where)
    return await db.run(lambda s: int(s.execute(query).scalar_one()))


# -- submitting ------------------------------------------------------------------------


async def test_same_idempotency_key_twice_is_one_run(db: Database, touch: TouchExecutor) -> None:
    engine = make_engine(db, [touch])

    first = await engine.submit(Touch(name="a"), requested_by=ALICE, idempotency_key="click-1")
    again = await engine.submit(Touch(name="a"), requested_by=ALICE, idempotency_key="click-1")

    assert (first.created, again.created) == (True, False)
    assert again.run_id == first.run_id
    assert await count(db, RunRow) == 1
    steps = await step_rows(db, first.run_id)
    assert [(s.position, s.name, s.state) for s in steps] == [
        (0, "prepare", "pending"),
        (1, "touch", "pending"),
        (2, "finish", "pending"),
    ]
    assert [a.event for a in await audit_rows(db, first.run_id)] == ["run.requested"]


# -- executing -------------------------------------------------------------------------


async def test_steps_run_in_order_checkpointed_with_outputs_passed_on(
    db: Database, touch: TouchExecutor, recorder: Recorder
) -> None:
    engine = make_engine(db, [touch])
    run_id = (await engine.submit(Touch(name="db"), requested_by=ALICE, idempotency_key="k")).run_id

    assert await engine.run_next() is True
    assert await engine.run_next() is False  # nothing else to claim

    assert recorder.steps_of(run_id) == STEP_NAMES
    assert recorder.seen_outputs[(run_id, "touch")] == {"prepare": {"prepared": "db"}}
    assert recorder.seen_outputs[(run_id, "finish")] == {
        "prepare": {"prepared": "db"},
        "touch": {"token": "db-touched"},
    }
    steps = await step_rows(db, run_id)
    assert [(s.name, s.state, s.output) for s in steps] == [
        ("prepare", "done", {"prepared": "db"}),
        ("touch", "done", {"token": "db-touched"}),
        ("finish", "done", {"summary": "db-touched (attempt 1)"}),
    ]
    for earlier, later in itertools.pairwise(steps):
        assert earlier.started_at is not None and earlier.finished_at is not None
        assert earlier.started_at <= earlier.finished_at <= later.started_at  # type: ignore[operator]
    row = await run_row(db, run_id)
    assert (row.state, row.error, row.attempts, row.claimed_by) == ("succeeded", None, 1, "w1")
    assert row.lease_until is None
    view = await engine.view(run_id)
    assert view.state == "succeeded"
    assert view.steps == [(title, "done", None) for _, title in TOUCH_STEPS]


async def test_audit_trail_names_the_service(db: Database, touch: TouchExecutor) -> None:
    engine = make_engine(db, [touch])
    action = Touch(name="cache", service="search")
    run_id = (await engine.submit(action, requested_by=ALICE, idempotency_key="k")).run_id
    await engine.run_next()

    audit = await audit_rows(db, run_id)

    assert [(a.event, a.actor, a.service) for a in audit] == [
        ("run.requested", ALICE, "search"),
        ("run.started", ALICE, "search"),
        ("run.succeeded", ALICE, "search"),
    ]
    assert all(a.detail["action"] == "touch cache of search" for a in audit)


async def test_failing_step_fails_the_run_with_its_title(
    db: Database, touch: TouchExecutor, recorder: Recorder
) -> None:
    touch.fail_at["touch"] = "disk full"
    engine = make_engine(db, [touch])
    run_id = (await engine.submit(Touch(name="db"), requested_by=ALICE, idempotency_key="k")).run_id

    assert await engine.run_next() is True

    row = await run_row(db, run_id)
    assert (row.state, row.error) == ("failed", "Touch the thing: disk full")
    assert row.lease_until is None
    assert [(s.name, s.state, s.error) for s in await step_rows(db, run_id)] == [
        ("prepare", "done", None),
        ("touch", "failed", "disk full"),
        ("finish", "pending", None),
    ]
    assert recorder.steps_of(run_id) == ["prepare", "touch"]
    failed = [a for a in await audit_rows(db, run_id) if a.event == "run.failed"]
    assert [a.detail["error"] for a in failed] == ["Touch the thing: disk full"]
    assert await engine.run_next() is False  # a failed Run stays failed until retried


async def test_retry_resumes_at_the_failed_step(
    db: Database, touch: TouchExecutor, recorder: Recorder
) -> None:
    touch.fail_at["touch"] = "disk full"
    engine = make_engine(db, [touch])
    run_id = (await engine.submit(Touch(name="db"), requested_by=ALICE, idempotency_key="k")).run_id
    await engine.run_next()
    touch.fail_at.clear()  # the disk was cleaned up

    assert await engine.retry(run_id, by=BOB) is True
    row = await run_row(db, run_id)
    assert (row.state, row.error, row.claimed_by) == ("pending", None, None)
    assert await engine.run_next() is True

    assert recorder.steps_of(run_id) == ["prepare", "touch", "touch", "finish"]
    # the first attempt's checkpoint feeds the second attempt
    assert recorder.seen_outputs[(run_id, "finish")]["prepare"] == {"prepared": "db"}
    row = await run_row(db, run_id)
    assert (row.state, row.error, row.attempts) == ("succeeded", None, 2)
    assert [(s.name, s.state) for s in await step_rows(db, run_id)] == [
        (name, "done") for name in STEP_NAMES
    ]
    events = [(a.event, a.actor) for a in await audit_rows(db, run_id)]
    assert events == [
        ("run.requested", ALICE),
        ("run.started", ALICE),
        ("run.failed", ALICE),
        ("run.retried", BOB),
        ("run.succeeded", ALICE),
    ]


async def test_retry_of_a_run_that_did_not_fail_is_refused(
    db: Database, touch: TouchExecutor
) -> None:
    engine = make_engine(db, [touch])
    run_id = (await engine.submit(Touch(name="db"), requested_by=ALICE, idempotency_key="k")).run_id

    assert await engine.retry(run_id, by=BOB) is False  # pending
    assert (await run_row(db, run_id)).state == "pending"
    await engine.run_next()
    assert await engine.retry(run_id, by=BOB) is False  # succeeded
    assert (await run_row(db, run_id)).state == "succeeded"
    assert await engine.retry(RunId("0" * 32), by=BOB) is False  # no such Run
    assert "run.retried" not in [a.event for a in await audit_rows(db, run_id)]


async def test_runs_sharing_a_lock_never_overlap_and_retry_respects_it(
    db: Database, touch: TouchExecutor
) -> None:
    engine = make_engine(db, [touch])
    first = Touch(name="a", lock="checkout/prod")
    run_id = (await engine.submit(first, requested_by=ALICE, idempotency_key="k1")).run_id

    with pytest.raises(RunLocked) as held:
        await engine.submit(
            Touch(name="b", lock="checkout/prod"), requested_by=BOB, idempotency_key="k2"
        )
    assert (held.value.kind, held.value.requested_by, held.value.state) == (
        "test.touch",
        ALICE,
        "pending",
    )
    # another lock, or none, is not held up; the same key again is the same Run
    await engine.submit(
        Touch(name="c", lock="checkout/staging"), requested_by=BOB, idempotency_key="k3"
    )
    assert (await engine.submit(first, requested_by=ALICE, idempotency_key="k1")).run_id == run_id

    touch.fail_at["touch"] = "disk full"
    await engine.run_next()
    assert (await run_row(db, run_id)).state == "failed"
    # a failed Run holds no lock: a newer one may start, and then the old one can't be retried
    newer = await engine.submit(
        Touch(name="d", lock="checkout/prod"), requested_by=BOB, idempotency_key="k4"
    )
    with pytest.raises(ChangeRefused, match="cannot be retried until it has finished"):
        await engine.retry(run_id, by=ALICE)
    assert (await run_row(db, run_id)).state == "failed"
    assert (await run_row(db, newer.run_id)).state == "pending"


async def test_unknown_action_kind_in_the_database_fails_clearly(
    db: Database, touch: TouchExecutor, recorder: Recorder
) -> None:
    newer = make_engine(db, [touch], worker_id="newer")
    run_id = (await newer.submit(Touch(name="db"), requested_by=ALICE, idempotency_key="k")).run_id
    older = make_engine(db, [], worker_id="older")  # a bot that never heard of test.touch

    with pytest.raises(UnknownAction):
        await older.submit(Touch(name="x"), requested_by=ALICE, idempotency_key="k2")
    assert await older.run_next() is True

    row = await run_row(db, run_id)
    assert row.state == "failed"
    assert row.error is not None
    assert row.error.startswith("unknown action kind test.touch")
    assert recorder.executed == []
    assert {s.state for s in await step_rows(db, run_id)} == {"pending"}
    assert [a.event for a in await audit_rows(db, run_id)] == ["run.requested", "run.failed"]


# -- crashes ---------------------------------------------------------------------------


async def test_run_cut_short_by_a_crash_is_finished_by_another_worker(
    db: Database, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process that dies runs no cleanup: unlike a shutdown (tests/e2e/test_stopping.py),
    # it never hands its Run back, so the heir waits for the lease.
    monkeypatch.setattr("engine.runs.release_claim", lambda *_: False)
    lease = timedelta(seconds=1)
    doomed = TouchExecutor(recorder, block_at="touch")
    first = make_engine(db, [doomed], worker_id="doomed", lease=lease)
    run_id = (await first.submit(Touch(name="db"), requested_by=ALICE, idempotency_key="k")).run_id
    stop_first = asyncio.Event()
    working = asyncio.create_task(first.work(stop_first))
    await asyncio.wait_for(doomed.entered.wait(), timeout=10)

    working.cancel()  # the process dies in the middle of "touch"
    with pytest.raises(asyncio.CancelledError):
        await working

    crashed = await run_row(db, run_id)
    assert (crashed.state, crashed.claimed_by, crashed.attempts) == ("running", "doomed", 1)
    assert [s.state for s in await step_rows(db, run_id)] == ["done", "running", "pending"]

    heir = make_engine(db, [TouchExecutor(recorder)], worker_id="heir", lease=lease)
    assert await heir.run_next() is False  # the dead worker's lease still holds
    # On SQLite, work() first takes back 'running' Runs (only one process works);
    # on PostgreSQL the heir claims the Run once the dead worker's lease runs out.
    stop = asyncio.Event()
    resumed = asyncio.create_task(heir.work(stop))
    await recorder.wait_until(lambda r: (run_id, "finish") in r.executed)
    stop.set()
    await asyncio.wait_for(resumed, timeout=10)

    assert recorder.steps_of(run_id) == ["prepare", "touch", "touch", "finish"]
    row = await run_row(db, run_id)
    assert (row.state, row.claimed_by, row.attempts) == ("succeeded", "heir", 2)
    assert [s.state for s in await step_rows(db, run_id)] == ["done", "done", "done"]
    events = [a.event for a in await audit_rows(db, run_id)]
    assert events == ["run.requested", "run.started", "run.succeeded"]


async def test_a_shutdown_mid_step_hands_the_run_back_at_once(
    db: Database, recorder: Recorder
) -> None:
    """SIGTERM sets the stop event: the step is cut short now, not after a deadline, and
    the Run is pending again with no claim, so the next worker resumes it without waiting
    for the lease; the steps done stay done."""
    blocked = TouchExecutor(recorder, block_at="touch")
    first = make_engine(db, [blocked], worker_id="leaving")
    run_id = (await first.submit(Touch(name="db"), requested_by=ALICE, idempotency_key="k")).run_id
    stop = asyncio.Event()
    working = asyncio.create_task(first.work(stop))
    await asyncio.wait_for(blocked.entered.wait(), timeout=10)

    stopping = asyncio.get_running_loop().time()
    stop.set()
    await asyncio.wait_for(working, timeout=10)

    assert asyncio.get_running_loop().time() - stopping < 2.5  # STOP_GRACE, then cut short
    row = await run_row(db, run_id)
    assert (row.state, row.claimed_by, row.lease_until) == ("pending", None, None)
    assert [s.state for s in await step_rows(db, run_id)] == ["done", "pending", "pending"]
    heir = make_engine(db, [TouchExecutor(recorder)], worker_id="heir")
    assert await heir.run_next() is True  # at once: no lease to wait out
    assert recorder.steps_of(run_id) == ["prepare", "touch", "touch", "finish"]  # resumed
    assert (await run_row(db, run_id)).state == "succeeded"


async def test_a_worker_that_lost_its_claim_does_not_finish_the_run(
    db: Database, recorder: Recorder
) -> None:
    slow = TouchExecutor(recorder, block_at="touch")
    engine = make_engine(db, [slow], worker_id="slow")
    run_id = (await engine.submit(Touch(name="db"), requested_by=ALICE, idempotency_key="k")).run_id
    stop = asyncio.Event()
    working = asyncio.create_task(engine.work(stop))
    await asyncio.wait_for(slow.entered.wait(), timeout=10)

    # Meanwhile its lease lapsed and another worker took the Run over.
    await db.run(
        lambda s: s.execute(update(RunRow).where(RunRow.id == run_id).values(claimed_by="heir"))
    )
    slow.release.set()
    await recorder.wait_until(lambda r: (run_id, "touch") in r.executed)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(working, timeout=10)

    row = await run_row(db, run_id)
    assert (row.state, row.claimed_by) == ("running", "heir")  # left to its new owner
    assert "finish" not in recorder.steps_of(run_id)
    assert [a.event for a in await audit_rows(db, run_id)] == ["run.requested", "run.started"]


# -- progress in Slack -------------------------------------------------------------------


async def test_progress_message_is_posted_then_updated_coalesced(
    db: Database, touch: TouchExecutor
) -> None:
    touch.fail_at["touch"] = "disk full"
    engine = make_engine(db, [touch])
    run_id = (
        await engine.submit(
            Touch(name="db"), requested_by=ALICE, idempotency_key="k", reply_channel=PAYMENTS
        )
    ).run_id
    key = f"run:{run_id}"

    [post] = await outbox_rows(db)
    assert (post.method, post.channel, post.message_key) == ("chat.postMessage", PAYMENTS, key)
    assert post.payload["text"].startswith("*Queued*: touch db of checkout")

    await engine.run_next()  # started, three step changes, failed: one pending update
    rows = await outbox_rows(db)
    assert [(r.method, r.message_key, r.state) for r in rows] == [
        ("chat.postMessage", key, "pending"),
        ("chat.update", key, "pending"),
    ]
    failed_text = rows[1].payload["text"]
    assert failed_text.startswith("*Failed*")
    assert "✗ Touch the thing: disk full" in str(rows[1].payload["blocks"])

    # once Slack has the update, the next change is a new update row
    await db.run(lambda s: s.execute(update(OutboxRow).values(state="sent")))
    touch.fail_at.clear()
    await engine.retry(run_id, by=BOB)
    await engine.run_next()

    rows = await outbox_rows(db)
    pending = [r for r in rows if r.state == "pending"]
    assert [(r.method, r.message_key) for r in pending] == [("chat.update", key)]
    assert pending[0].payload["text"].startswith("*Done*")
    assert "✓ Finish" in str(pending[0].payload["blocks"])
    assert [r.method for r in rows] == ["chat.postMessage", "chat.update", "chat.update"]


# -- many Runs, exactly once ---------------------------------------------------------------


async def submit_many(engine: RunEngine, n: int) -> list[RunId]:
    return [
        (
            await engine.submit(
                Touch(name=f"thing-{i}"), requested_by=ALICE, idempotency_key=f"bulk-{i}"
            )
        ).run_id
        for i in range(n)
    ]


async def test_one_sqlite_engine_200_runs_each_exactly_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'runs.db'}")
    upgrade(db.engine)
    log = tmp_path / "touched.log"
    recorder = Recorder(log_path=log)
    engine = make_engine(db, [TouchExecutor(recorder)], concurrency=4)
    try:
        run_ids = await submit_many(engine, 200)
        stop = asyncio.Event()
        working = asyncio.create_task(engine.work(stop))
        await recorder.wait_until(
            lambda r: sum(step == "finish" for _, step in r.executed) >= 200, timeout=45
        )
        stop.set()
        await asyncio.wait_for(working, timeout=10)

        assert set(recorder.counts().values()) == {1}
        assert len(recorder.executed) == 3 * 200
        assert sorted(log.read_text().split()) == sorted(run_ids)
        assert await count(db, RunRow, RunRow.state == "succeeded") == 200
    finally:
        db.dispose()


async def test_two_processes_one_postgres_200_runs(postgres_url: str, tmp_path: Path) -> None:
    db = Database(postgres_url)
    upgrade(db.engine)
    log = tmp_path / "touched.log"
    procs: list[asyncio.subprocess.Process] = []
    try:
        run_ids = await submit_many(make_engine(db, [TouchExecutor(Recorder())]), 200)
        for worker in ("worker-1", "worker-2"):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(WORKER_SCRIPT),
                    postgres_url,
                    str(log),
                    worker,
                    "--wait-for-go",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        for proc in procs:  # both connected: start them together
            ready = await asyncio.wait_for(proc.stdout.readline(), timeout=20)  # type: ignore[union-attr]
            assert ready == b"ready\n", (await proc.communicate())[1].decode()[-2000:]
        outputs = await asyncio.wait_for(
            asyncio.gather(*(proc.communicate(b"go\n") for proc in procs)), timeout=40
        )
        for proc, (_, stderr) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, stderr.decode()[-2000:]

        lines = [line.split() for line in log.read_text().splitlines()]
        assert len(lines) == 200
        executed_by = {run_id: worker for run_id, worker in lines}
        assert sorted(executed_by) == sorted(run_ids)  # 200 distinct: each exactly once
        assert await count(db, RunRow, RunRow.state == "succeeded") == 200

        def claims(session: Session) -> dict[str, str | None]:
            return {rid: by for rid, by in session.execute(select(RunRow.id, RunRow.claimed_by))}

        claimed_by = await db.run(claims)
        assert claimed_by == executed_by
        per_worker = Counter(claimed_by.values())
        print(f"two workers on one PostgreSQL database executed: {dict(per_worker)}")
        assert set(per_worker) == {"worker-1", "worker-2"}, per_worker
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.communicate()
        db.dispose()
