"""What a Run can be, what holds a lock key, and the Run engine's errors.

A Run moves `waiting_approval` -> `pending` -> `running` -> `succeeded` | `failed` |
`cancelled`; the states in LOCKING_STATES hold the Action's lock key (a partial unique
index in the database makes two holders impossible).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import RunRow

ACTIVE_STATES = ("pending", "running")
FINAL_STATES = ("succeeded", "failed", "cancelled")
LOCKING_STATES = ("waiting_approval", *ACTIVE_STATES)
GAUGE_INTERVAL = 10.0
"""Seconds between counts of Runs by state for the metrics gauge."""


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


__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "GAUGE_INTERVAL",
    "LOCKING_STATES",
    "RunLocked",
    "UnknownAction",
    "lock_holder",
]
