"""The Run engine: durable, step-by-step execution of Actions, exactly once.

A Run is a row; each step of it is a checkpoint row. Workers claim a Run with a
conditional UPDATE and a lease (on PostgreSQL the candidate is first locked with
`FOR UPDATE SKIP LOCKED`, so replicas never wait on each other), execute the steps not
yet done, and checkpoint each one. If a worker dies, its lease runs out and another
worker resumes the Run at the first step not done. Submitting the same idempotency
key twice (a Slack retry, a double click) finds the existing Run instead of a new one.

Every state change is written to the audit log and, when the Run has a reply
channel, shown in one progress message that is updated in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.audit import record_in
from engine.db import Database, DatabaseUnavailable, RunRow, RunStepRow, new_id, utcnow
from engine.logs import request_id
from engine.logs import run_id as current_run
from engine.metrics import Metrics
from engine.outbox import Outbox
from engine.progress import Progress, RunView
from engine.run_states import (
    ACTIVE_STATES,
    FINAL_STATES,
    GAUGE_INTERVAL,
    RELEASED,
    RunLocked,
    UnknownAction,
    lock_holder,
    release_claim,
)
from engine.tasks import cancel_on, wait_any
from kernel.actions import Action, Executor, Step, StepContext, SubmittedRun
from kernel.errors import AdapterError, ChangeRefused, NotConfigured, StepFailed
from kernel.ids import RunId, SlackChannelId, SlackUserId
from kernel.ports.platform import AuditEntry

log = logging.getLogger(__name__)


class RunEngine:
    """Submits Runs and executes them; one instance per process."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        metrics: Metrics,
        executors: Iterable[Executor],
        *,
        worker_id: str,
        lease: timedelta = timedelta(seconds=30),
        concurrency: int = 4,
        poll_interval: float = 2.0,
        operators: str = "the platform team",
    ) -> None:
        self.db, self.outbox, self.metrics = db, outbox, metrics
        self.executors = {e.action_type.kind: e for e in executors}
        self.worker_id, self.lease = worker_id, lease
        self.concurrency, self.poll_interval = concurrency, poll_interval
        self.wakeup = asyncio.Event()
        self._gauges_at = 0.0
        self.progress = Progress(outbox, self._describe, operators=operators)

    def register(self, executors: Iterable[Executor]) -> None:
        """Add executors once the ports they need exist (they need this engine too)."""
        for executor in executors:
            self.executors[executor.action_type.kind] = executor

    # -- submitting ------------------------------------------------------------------

    async def submit(
        self,
        action: Action,
        *,
        requested_by: SlackUserId,
        idempotency_key: str,
        reply_channel: SlackChannelId | None = None,
        state: str = "pending",
        flags: dict[str, Any] | None = None,
        on_created: Callable[[Session, str], None] | None = None,
    ) -> SubmittedRun:
        """Store a Run for `action` unless one with this key exists; wake a worker.

        `state` is "pending" to run now or "waiting_approval" to wait for `release`.
        RunLocked when another active Run holds the Action's lock key. `on_created(session,
        run_id)` runs in the same transaction when the Run is new (e.g. to open its approval
        request atomically with it).
        """
        if action.kind not in self.executors:
            raise UnknownAction(action.kind)
        values = {
            "id": new_id(),
            "idempotency_key": idempotency_key,
            "action_kind": action.kind,
            "action": action.model_dump(mode="json"),
            "fingerprint": action.fingerprint(),
            "service": action.affected_service(),
            "environment": action.affected_environment(),
            "lock_key": action.lock_key(),
            "state": state,
            "requested_by": requested_by,
            "reply_channel": reply_channel,
            "request_id": request_id.get(),
            "flags": flags or {},
            "attempts": 0,
            "result": {},
            "created_at": utcnow(),
            "updated_at": utcnow(),
        }

        def insert(session: Session) -> SubmittedRun:
            dialect = postgresql if self.db.is_postgres else sqlite
            inserted = session.execute(
                dialect.insert(RunRow)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(RunRow.id)
            ).scalar()
            created = inserted is not None
            run_id = (
                inserted
                or session.execute(
                    select(RunRow.id).where(RunRow.idempotency_key == idempotency_key)
                ).scalar_one()
            )
            if created:
                record_in(
                    session,
                    AuditEntry.of(requested_by, "run.requested", action=action, run_id=run_id),
                )
                for position, step in enumerate(self.executors[action.kind].steps(action)):
                    session.add(
                        RunStepRow(
                            run_id=run_id, position=position, name=step.name, title=step.title[:200]
                        )
                    )
                if on_created is not None:
                    session.flush()
                    on_created(session, run_id)
                self.show_progress(session, run_id)
            return SubmittedRun(RunId(run_id), created)

        try:
            submitted = await self.db.run(insert)
        except IntegrityError:
            holder = await self.db.run(lambda s: lock_holder(s, action.lock_key()))
            if holder is None:  # the holder finished in between: try once more
                submitted = await self.db.run(insert)
            else:
                raise holder from None
        self.wakeup.set()
        self.outbox.notify()
        return submitted

    def release(self, session: Session, run_id: str, *, by: SlackUserId) -> bool:
        """In the caller's transaction: let a Run waiting for approval run. Conditional,
        so two approvers racing release it once; False if it was not waiting."""
        released = self._transition(
            session, run_id, "waiting_approval", {"state": "pending"}, by=by, event="run.approved"
        )
        if released:
            self.wakeup.set()
        return released

    def cancel(self, session: Session, run_id: str, *, by: SlackUserId, reason: str) -> bool:
        """In the caller's transaction: cancel a Run that waits for approval (rejected,
        expired or stale). False if it was not waiting."""
        return self._transition(
            session,
            run_id,
            "waiting_approval",
            {"state": "cancelled", "error": reason, "result": {"cancelled_by": by}},
            by=by,
            event="run.cancelled",
            detail={"reason": reason},
        )

    def _transition(
        self,
        session: Session,
        run_id: str,
        from_state: str,
        values: dict[str, Any],
        *,
        by: SlackUserId,
        event: str,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        """Move a Run out of `from_state` with one conditional UPDATE (never read-then-
        write), audit it and show it; False when the Run was not in `from_state`."""
        changed = session.execute(
            update(RunRow).where(RunRow.id == run_id, RunRow.state == from_state).values(**values)
        )
        if not getattr(changed, "rowcount", 0):
            return False
        row = session.get_one(RunRow, run_id)
        record_in(
            session,
            AuditEntry.of(
                by, event, action=self._action_or_none(row), run_id=run_id, detail=detail
            ),
        )
        self.show_progress(session, run_id)
        return True

    async def stale_reason(self, action: Action) -> str | None:
        """Why `action` no longer matches the live system, if its executor can tell."""
        executor = self.executors.get(action.kind)
        check = getattr(executor, "stale_reason", None)
        if check is None:
            return None
        reason: str | None = await check(action)
        return reason

    def action_of(self, session: Session, run_id: str) -> Action:
        """The Action a Run carries (UnknownAction if no executor knows its kind)."""
        return self._action(session.get_one(RunRow, run_id))

    async def retry(self, run_id: RunId, *, by: SlackUserId) -> bool:
        """Put a failed Run back in the queue; done steps are skipped. False if not failed;
        RunLocked if another Run now holds its lock (a newer deploy, say)."""

        def requeue(session: Session) -> bool:
            row = session.get(RunRow, run_id)
            holder = lock_holder(session, row.lock_key) if row is not None else None
            if holder is not None:  # a newer Run of the same service and env took over
                raise holder
            values = {"state": "pending", "error": None, "claimed_by": None, "lease_until": None}
            if not self._transition(session, run_id, "failed", values, by=by, event="run.retried"):
                return False
            session.execute(
                update(RunStepRow)
                .where(RunStepRow.run_id == run_id, RunStepRow.state == "failed")
                .values(state="pending", error=None, output={})
            )
            self.show_progress(session, run_id)
            return True

        try:
            requeued = await self.db.run(requeue)
        except RunLocked as held:
            state = "waiting for approval" if held.state == "waiting_approval" else "in progress"
            raise ChangeRefused(
                f"A newer {held.kind}, asked by <@{held.requested_by}> at {held.since:%H:%M} UTC, "
                f"is {state} for the same service and environment; this one cannot be retried "
                "until it has finished."
            ) from None
        self.wakeup.set()
        return requeued

    async def action(self, run_id: RunId) -> Action | None:
        def read(session: Session) -> Action | None:
            row = session.get(RunRow, run_id)
            return None if row is None else self._action_or_none(row)

        return await self.db.run(read)

    async def close(self, run_id: RunId, *, by: SlackUserId, reason: str) -> bool:
        closed = await self.db.run(
            lambda session: self._transition(
                session,
                run_id,
                "failed",
                {"state": "cancelled", "error": reason},
                by=by,
                event="run.closed",
                detail={"reason": reason},
            )
        )
        self.outbox.notify()
        return closed

    async def outputs(self, run_id: RunId) -> dict[str, dict[str, Any]]:
        return await self.db.run(lambda s: _outputs(s, run_id))

    async def requested_by(self, run_id: RunId) -> SlackUserId | None:
        row = await self.db.run(lambda s: s.get(RunRow, run_id))
        return SlackUserId(row.requested_by) if row is not None else None

    async def view(self, run_id: RunId) -> RunView:
        return await self.db.run(lambda s: self.progress.view(s, run_id))

    # -- working ---------------------------------------------------------------------

    async def work(self, stop: asyncio.Event) -> None:
        """Claim and execute Runs until `stop` is set, `concurrency` at a time."""
        if not self.db.is_postgres:
            await self.db.run(_recover_sqlite)
        await asyncio.gather(*(self._work_loop(stop) for _ in range(self.concurrency)))

    async def _work_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                ran = await self.run_next(stop)
            except Exception:
                log.exception("worker loop failed; retrying")
                ran = False
            if not ran:
                self.wakeup.clear()
                await wait_any(stop, self.wakeup, seconds=self.poll_interval)

    async def run_next(self, stop: asyncio.Event | None = None) -> bool:
        """Claim one Run and execute it; False when there was nothing to do. When `stop` is
        set meanwhile, the Run is cut short at once and its claim released (`_hand_back`)."""
        run_id = await self.db.run(self._claim)
        if run_id is None:
            if time.monotonic() - self._gauges_at > GAUGE_INTERVAL:
                self._gauges_at = time.monotonic()
                await self._refresh_gauges()
            return False
        try:  # told to stop meanwhile: the Run is cut short and handed back, to be resumed
            done = not (stop and stop.is_set()) and await cancel_on(
                stop, self.execute(RunId(run_id))
            )
        except asyncio.CancelledError:
            await self._hand_back(run_id)
            raise
        if not done:
            await self._hand_back(run_id)
        return True

    async def _hand_back(self, run_id: str) -> None:
        if await self.db.run(lambda s: release_claim(s, run_id, self.worker_id)):
            log.warning(RELEASED, extra={"run_id": run_id, "worker": self.worker_id})

    def _claim(self, session: Session) -> str | None:
        now = utcnow()
        claimable = or_(
            RunRow.state == "pending",
            (RunRow.state == "running") & (RunRow.lease_until < now),
        )
        candidates = select(RunRow.id).where(claimable).order_by(RunRow.created_at).limit(1)
        if self.db.is_postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        run_id = session.execute(candidates).scalar()
        if run_id is None:
            return None
        claimed = session.execute(
            update(RunRow)
            .where(RunRow.id == run_id, claimable)
            .values(
                state="running",
                claimed_by=self.worker_id,
                lease_until=now + self.lease,
                attempts=RunRow.attempts + 1,
            )
        )
        return str(run_id) if getattr(claimed, "rowcount", 0) else None

    async def execute(self, run_id: RunId) -> None:
        """Run every step not yet done, checkpointing each; the Run must be claimed."""
        row = await self.db.run(lambda s: s.get_one(RunRow, run_id))
        token, run_token = request_id.set(row.request_id), current_run.set(run_id)
        heartbeat = asyncio.create_task(self._heartbeat(run_id))
        try:
            action = self._action(row)
            await self.db.run(lambda s: self._started(s, row, action))
            steps = self.executors[action.kind].steps(action)
            outputs = await self.db.run(lambda s: _outputs(s, run_id))
            failed: list[str] = []
            for position, step in enumerate(steps):
                if step.name in outputs:
                    continue
                if not await self.db.run(lambda s: self._still_mine(s, run_id)):
                    log.warning("lost the claim on a run; stopping", extra={"run_id": run_id})
                    return
                context = StepContext(
                    run_id=run_id,
                    action=action,
                    requested_by=SlackUserId(row.requested_by),
                    outputs=outputs,
                    attempt=row.attempts,
                    report=self._reporter(run_id, step.name),
                )
                output = await self._execute_step(run_id, position, step, context)
                if isinstance(output, str):  # it failed, saying why
                    failed.append(f"{step.title}: {output}")
                    if step.keep_going:
                        continue
                    break
                outputs[step.name] = output
            state, error = ("failed", "; ".join(failed)) if failed else ("succeeded", None)
            await self.db.run(lambda s: self._finished(s, row, action, state, error))
        except UnknownAction as exc:
            reason = f"unknown action kind {exc}; is this bot older than the one that stored it?"
            await self.db.run(lambda s: self._finished(s, row, None, "failed", reason))
        finally:
            heartbeat.cancel()
            request_id.reset(token)
            current_run.reset(run_token)
            self.outbox.notify()

    async def _execute_step(
        self, run_id: RunId, position: int, step: Step, context: StepContext
    ) -> dict[str, Any] | str:
        """The step's output; or, when it failed, why (the step is marked failed)."""
        await self.db.run(lambda s: self._step_state(s, run_id, position, step, "running"))
        log.info("step started", extra={"run_id": run_id, "step": step.name})
        said: dict[str, Any] | None = None
        try:
            output = await step.run(context) or {}
        except NotConfigured as exc:  # the operator's to fix: said once, with who to ask
            reason = f"{exc.system} is not configured on this bot"
            said = {"not_configured": {"system": exc.system, "variables": exc.variables}}
        except (StepFailed, AdapterError) as exc:  # a message for people, no trace
            reason = str(exc)
        except Exception as exc:
            log.exception("step crashed", extra={"run_id": run_id, "step": step.name})
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        else:
            await self.db.run(
                lambda s: self._step_state(s, run_id, position, step, "done", output=output)
            )
            return output
        await self.db.run(
            lambda s: self._step_state(
                s, run_id, position, step, "failed", error=reason, output=said
            )
        )
        return reason

    def _reporter(self, run_id: RunId, step_name: str) -> Callable[[str], Awaitable[None]]:
        async def report(detail: str) -> None:
            def save(session: Session) -> None:
                session.execute(
                    update(RunStepRow)
                    .where(RunStepRow.run_id == run_id, RunStepRow.name == step_name)
                    .values(detail=detail[:500])
                )
                self.show_progress(session, run_id)

            with contextlib.suppress(DatabaseUnavailable):
                await self.db.run(save)
            self.outbox.notify()

        return report

    def _still_mine(self, session: Session, run_id: str) -> bool:
        """True while this worker holds the Run (its lease may have lapsed to another)."""
        owner = session.execute(
            select(RunRow.claimed_by).where(RunRow.id == run_id, RunRow.state == "running")
        ).scalar()
        return bool(owner == self.worker_id)

    async def _heartbeat(self, run_id: RunId) -> None:
        """Keep our lease while a step runs; if the database is away, keep trying."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            with contextlib.suppress(DatabaseUnavailable):
                await self.db.run(
                    lambda s: s.execute(
                        update(RunRow)
                        .where(RunRow.id == run_id, RunRow.claimed_by == self.worker_id)
                        .values(lease_until=utcnow() + self.lease)
                    )
                )

    async def _refresh_gauges(self) -> None:
        counts = await self.db.run(
            lambda s: dict(
                s.execute(select(RunRow.state, func.count()).group_by(RunRow.state)).all()
            )
        )
        for state in (*ACTIVE_STATES, *FINAL_STATES, "waiting_approval"):
            self.metrics.runs.labels(state).set(counts.get(state, 0))

    # -- transitions (each in the caller's transaction) -------------------------------

    def _started(self, session: Session, row: RunRow, action: Action) -> None:
        if row.attempts == 1:
            record_in(
                session,
                AuditEntry.of(row.requested_by, "run.started", action=action, run_id=row.id),
            )
        self.metrics.run_transitions.labels(action.kind, "running").inc()
        self.show_progress(session, row.id)

    def _step_state(
        self,
        session: Session,
        run_id: str,
        position: int,
        step: Step,
        state: str,
        *,
        output: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "error": error, "title": step.title[:200]}
        if state == "running":
            values["started_at"] = utcnow()
        else:
            values["finished_at"] = utcnow()
        if output is not None:
            values["output"] = output
        changed = session.execute(
            update(RunStepRow)
            .where(RunStepRow.run_id == run_id, RunStepRow.name == step.name)
            .values(**values)
        )
        if not getattr(changed, "rowcount", 0):  # the plan grew a step since submission
            session.add(RunStepRow(run_id=run_id, position=position, name=step.name, **values))
        self.show_progress(session, run_id)

    def _finished(
        self, session: Session, row: RunRow, action: Action | None, state: str, error: str | None
    ) -> None:
        finished = session.execute(
            update(RunRow)
            .where(RunRow.id == row.id, RunRow.claimed_by == self.worker_id)
            .values(state=state, error=error, lease_until=None)
        )
        if not getattr(finished, "rowcount", 0):
            log.warning(
                "lost the claim on a run; another worker finishes it", extra={"run_id": row.id}
            )
            return
        record_in(
            session,
            AuditEntry.of(
                row.requested_by,
                f"run.{state}",
                action=action,
                run_id=row.id,
                detail={"error": error} if error else None,
            ),
        )
        self.metrics.run_transitions.labels(row.action_kind, state).inc()
        began = session.execute(
            select(func.min(RunStepRow.started_at)).where(RunStepRow.run_id == row.id)
        ).scalar()
        took = (utcnow() - (began or row.created_at)).total_seconds()
        self.metrics.run_seconds.labels(row.action_kind, state).observe(max(took, 0.0))
        log.info("run finished", extra={"run_id": row.id, "state": state, "error": error})
        self.show_progress(session, row.id)

    # -- showing progress --------------------------------------------------------------

    def show_progress(self, session: Session, run_id: str) -> None:
        """Post or update the Run's progress message (engine.progress)."""
        self.progress.show(session, run_id)

    def _describe(self, row: RunRow) -> tuple[str, list[tuple[str, str]]]:
        """(the Run's summary, the extra buttons its executor offers on failure)."""
        try:
            action = self._action(row)
        except UnknownAction:
            return row.action_kind, []
        offer = getattr(self.executors[row.action_kind], "failure_buttons", None)
        buttons = list(offer(action)) if offer is not None and row.state == "failed" else []
        return action.summary(), buttons

    def _action_or_none(self, row: RunRow) -> Action | None:
        try:
            return self._action(row)
        except UnknownAction:
            return None

    def _action(self, row: RunRow) -> Action:
        executor = self.executors.get(row.action_kind)
        if executor is None:
            raise UnknownAction(row.action_kind)
        return executor.action_type.model_validate(row.action)


def _outputs(session: Session, run_id: str) -> dict[str, dict[str, Any]]:
    rows = session.execute(
        select(RunStepRow.name, RunStepRow.output).where(
            RunStepRow.run_id == run_id, RunStepRow.state == "done"
        )
    )
    return {name: output for name, output in rows}


def _recover_sqlite(session: Session) -> None:
    """On SQLite only this process works, so any 'running' Run was cut short by a crash."""
    session.execute(
        update(RunRow).where(RunRow.state == "running").values(lease_until=None, state="pending")
    )
