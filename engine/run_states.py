"""What a Run can be, what holds a lock key, and the Run engine's errors.

A Run moves `waiting_approval` -> `pending` -> `running` -> `succeeded` | `failed` |
`cancelled`; the states in LOCKING_STATES hold the Action's lock key (a partial unique
index in the database makes two holders impossible).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.db import RunRow, RunStepRow

ACTIVE_STATES = ("pending", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")
LOCKING_STATES = ("waiting_approval", *ACTIVE_STATES)
GAUGE_INTERVAL = 10.0
"""Seconds between counts of Runs by state for the metrics gauge."""
RELEASED = (
    "run released at shutdown: its claim is given up, so another replica or the next start "
    "resumes it at the step that was running"
)


class UnknownAction(LookupError):
    """A Run names an Action kind no executor is registered for (e.g. after a downgrade)."""


class RunLocked(Exception):
    """Another Run holds the Action's lock key; says which, by whom and since when."""

    def __init__(self, *, kind: str, requested_by: str, since: datetime, state: str) -> None:
        self.kind, self.requested_by, self.since, self.state = kind, requested_by, since, state
        super().__init__(f"{kind} by {requested_by} since {since:%H:%M} UTC ({state})")


def lock_holder(session: Session, lock_key: str | None) -> RunLocked | None:
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


def release_claim(session: Session, run_id: str, worker_id: str) -> bool:
    """Give a running Run back to the queue (state `pending`, no claim, no lease) if
    `worker_id` still holds it; its running step is pending again. Done steps stay done,
    so whoever claims it next resumes at the step that was cut short."""
    released = session.execute(
        update(RunRow)
        .where(RunRow.id == run_id, RunRow.state == "running", RunRow.claimed_by == worker_id)
        .values(state="pending", claimed_by=None, lease_until=None)
    )
    if not getattr(released, "rowcount", 0):
        return False
    session.execute(
        update(RunStepRow)
        .where(RunStepRow.run_id == run_id, RunStepRow.state == "running")
        .values(state="pending")
    )
    return True


__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "GAUGE_INTERVAL",
    "LOCKING_STATES",
    "RELEASED",
    "RunLocked",
    "UnknownAction",
    "lock_holder",
    "release_claim",
]
