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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db import AuditRow, Database, DatabaseUnavailable, RunRow, RunStepRow, new_id, utcnow
from bot.domain import (
    Action,
    ChangeRefused,
    Executor,
    RunId,
    SlackChannelId,
    SlackUserId,
    Step,
    StepContext,
    StepFailed,
    SubmittedRun,
)
from bot.logs import request_id
from bot.metrics import Metrics
from bot.outbox import Outbox

log = logging.getLogger(__name__)

ACTIVE_STATES = ("pending", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")
LOCKING_STATES = ("waiting_approval", *ACTIVE_STATES)
GAUGE_INTERVAL = 10.0
"""Seconds between counts of Runs by state for the metrics gauge."""
STEP_ICONS = {"pending": "○", "running": "◔", "done": "✓", "failed": "✗", "skipped": "–"}


class UnknownAction(LookupError):
    """A Run names an Action kind no executor is registered for (e.g. after a downgrade)."""


class RunLocked(Exception):
    """Another Run holds the Action's lock key; says which, by whom and since when."""

    def __init__(self, *, kind: str, requested_by: str, since: datetime, state: str) -> None:
        self.kind, self.requested_by, self.since, self.state = kind, requested_by, since, state
        super().__init__(f"{kind} by {requested_by} since {since:%H:%M} UTC ({state})")


@dataclass(frozen=True)
class RunView:
    """A Run and its steps as they are now, for rendering and tests."""

    id: RunId
    kind: str
    state: str
    summary: str
    requested_by: str
    error: str | None
    steps: list[tuple[str, str, str | None]]  # (title, state, error or live detail)
    flags: dict[str, Any] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    """Extra (action_id, label) buttons the executor offers on failure."""


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
    ) -> None:
        self.db, self.outbox, self.metrics = db, outbox, metrics
        self.executors = {e.action_type.kind: e for e in executors}
        self.worker_id, self.lease = worker_id, lease
        self.concurrency, self.poll_interval = concurrency, poll_interval
        self.wakeup = asyncio.Event()
        self._gauges_at = 0.0

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
                _audit(session, requested_by, "run.requested", run_id, action)
                for position, step in enumerate(self.executors[action.kind].steps(action)):
                    session.add(RunStepRow(run_id=run_id, position=position, name=step.name))
                if on_created is not None:
                    session.flush()
                    on_created(session, run_id)
                self.show_progress(session, run_id)
            return SubmittedRun(RunId(run_id), created)

        try:
            submitted = await self.db.run(insert)
        except IntegrityError:
            holder = await self.db.run(lambda s: _lock_holder(s, action.lock_key()))
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
            {"state": "cancelled", "error": reason},
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
        _audit(session, by, event, run_id, self._action_or_none(row), detail=detail)
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
            holder = _lock_holder(session, row.lock_key) if row is not None else None
            if holder is not None:  # a newer Run of the same service and env took over
                raise holder
            values = {"state": "pending", "error": None, "claimed_by": None, "lease_until": None}
            if not self._transition(session, run_id, "failed", values, by=by, event="run.retried"):
                return False
            session.execute(
                update(RunStepRow)
                .where(RunStepRow.run_id == run_id, RunStepRow.state == "failed")
                .values(state="pending", error=None)
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

    async def requested_by(self, run_id: RunId) -> SlackUserId | None:
        row = await self.db.run(lambda s: s.get(RunRow, run_id))
        return SlackUserId(row.requested_by) if row is not None else None

    async def view(self, run_id: RunId) -> RunView:
        return await self.db.run(lambda s: self._view(s, run_id))

    # -- working ---------------------------------------------------------------------

    async def work(self, stop: asyncio.Event) -> None:
        """Claim and execute Runs until `stop` is set, `concurrency` at a time."""
        if not self.db.is_postgres:
            await self.db.run(_recover_sqlite)
        await asyncio.gather(*(self._work_loop(stop) for _ in range(self.concurrency)))

    async def _work_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                ran = await self.run_next()
            except Exception:
                log.exception("worker loop failed; retrying")
                ran = False
            if not ran:
                with contextlib.suppress(TimeoutError):
                    self.wakeup.clear()
                    await asyncio.wait_for(_either(stop, self.wakeup), timeout=self.poll_interval)

    async def run_next(self) -> bool:
        """Claim one Run and execute it; False when there was nothing to do."""
        run_id = await self.db.run(self._claim)
        if run_id is None:
            if time.monotonic() - self._gauges_at > GAUGE_INTERVAL:
                self._gauges_at = time.monotonic()
                await self._refresh_gauges()
            return False
        await self.execute(RunId(run_id))
        return True

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
        token = request_id.set(row.request_id)
        heartbeat = asyncio.create_task(self._heartbeat(run_id))
        try:
            action = self._action(row)
            await self.db.run(lambda s: self._started(s, row, action))
            steps = self.executors[action.kind].steps(action)
            outputs = await self.db.run(lambda s: _outputs(s, run_id))
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
                if output is None:
                    return
                outputs[step.name] = output
            await self.db.run(lambda s: self._finished(s, row, action, "succeeded", None))
        except UnknownAction as exc:
            reason = f"unknown action kind {exc}; is this bot older than the one that stored it?"
            await self.db.run(lambda s: self._finished(s, row, None, "failed", reason))
        finally:
            heartbeat.cancel()
            request_id.reset(token)
            self.outbox.notify()

    async def _execute_step(
        self, run_id: RunId, position: int, step: Step, context: StepContext
    ) -> dict[str, Any] | None:
        await self.db.run(lambda s: self._step_state(s, run_id, position, step, "running"))
        log.info("step started", extra={"run_id": run_id, "step": step.name})
        try:
            output = await step.run(context) or {}
        except StepFailed as exc:
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
            lambda s: self._step_state(s, run_id, position, step, "failed", error=reason)
        )
        row = await self.db.run(lambda s: s.get_one(RunRow, run_id))
        await self.db.run(
            lambda s: self._finished(s, row, context.action, "failed", f"{step.title}: {reason}")
        )
        return None

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
            _audit(session, SlackUserId(row.requested_by), "run.started", row.id, action)
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
        values: dict[str, Any] = {"state": state, "error": error}
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
        _audit(
            session,
            SlackUserId(row.requested_by),
            f"run.{state}",
            row.id,
            action,
            detail={"error": error} if error else None,
        )
        self.metrics.run_transitions.labels(row.action_kind, state).inc()
        log.info("run finished", extra={"run_id": row.id, "state": state, "error": error})
        self.show_progress(session, row.id)

    # -- showing progress --------------------------------------------------------------

    def show_progress(self, session: Session, run_id: str) -> None:
        """Post or update the Run's progress message (and its announcement copy)."""
        row = session.get_one(RunRow, run_id)
        announce = (row.flags or {}).get("announce_channel")
        if row.reply_channel is None and not announce:
            return
        session.flush()
        view = self._view(session, RunId(run_id))
        text, blocks = render_progress(view)
        if row.reply_channel is not None:
            self.outbox.enqueue_post_or_update(
                session, row.reply_channel, f"run:{run_id}", text=text, blocks=blocks
            )
        if announce and announce != row.reply_channel:
            quiet = [b for b in blocks if b.get("type") != "actions"]
            self.outbox.enqueue_post_or_update(
                session, announce, f"run:{run_id}:announce", text=text, blocks=quiet
            )

    def _view(self, session: Session, run_id: RunId) -> RunView:
        row = session.get_one(RunRow, run_id)
        steps = session.execute(
            select(RunStepRow).where(RunStepRow.run_id == run_id).order_by(RunStepRow.position)
        ).scalars()
        buttons: list[tuple[str, str]] = []
        try:
            action: Action | None = self._action(row)
            executor = self.executors[row.action_kind]
            titles = {s.name: s.title for s in executor.steps(action)}  # type: ignore[arg-type]
            offer = getattr(executor, "failure_buttons", None)
            if offer is not None and row.state == "failed":
                buttons = list(offer(action))
        except UnknownAction:
            action, titles = None, {}
        return RunView(
            id=run_id,
            kind=row.action_kind,
            state=row.state,
            summary=action.summary() if action else row.action_kind,
            requested_by=row.requested_by,
            error=row.error,
            steps=[
                (
                    titles.get(s.name, s.name),
                    s.state,
                    s.error or (s.detail if s.state == "running" else None),
                )
                for s in steps
            ],
            flags=dict(row.flags or {}),
            buttons=buttons,
        )

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


def render_progress(view: RunView) -> tuple[str, list[dict[str, Any]]]:
    """The progress message: a headline and a line per step."""
    from bot.mrkdwn import escape

    headline = {
        "pending": "Queued",
        "running": "Running",
        "succeeded": "Done",
        "failed": "Failed",
        "cancelled": "Cancelled",
        "waiting_approval": "Waiting for approval",
    }.get(view.state, view.state)
    lines = []
    for title, state, error in view.steps:
        line = f"{STEP_ICONS.get(state, '?')} {escape(title)}"
        if error:
            line += f": {escape(error)}"
        lines.append(line)
    text = f"*{headline}*: {escape(view.summary)} (requested by <@{view.requested_by}>)"
    if view.flags.get("break_glass"):
        text += " :rotating_light: *break-glass*, without approval"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
    ]
    if lines:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}}
        )
    if view.error:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(view.error)[:2000]}]}
        )
    if view.state == "failed":
        buttons = [("run.retry", "Retry"), *view.buttons]
        blocks.append(
            {
                "type": "actions",
                "block_id": "run_actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": action_id,
                        "text": {"type": "plain_text", "text": label},
                        "value": view.id,
                    }
                    for action_id, label in buttons
                ],
            }
        )
    return text, blocks


def _audit(
    session: Session,
    actor: SlackUserId,
    event: str,
    run_id: str,
    action: Action | None,
    *,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditRow(
            actor=actor,
            event=event,
            service=action.affected_service() if action else None,
            environment=action.affected_environment() if action else None,
            run_id=run_id,
            request_id=request_id.get(),
            detail={"action": action.summary(), **(detail or {})} if action else (detail or {}),
        )
    )


def _lock_holder(session: Session, lock_key: str | None) -> RunLocked | None:
    if lock_key is None:
        return None
    row = session.execute(
        select(RunRow).where(RunRow.lock_key == lock_key, RunRow.state.in_(LOCKING_STATES))
    ).scalar()
    if row is None:
        return None
    return RunLocked(
        kind=row.action_kind, requested_by=row.requested_by, since=row.created_at, state=row.state
    )


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


async def _either(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
