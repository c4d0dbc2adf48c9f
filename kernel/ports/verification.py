"""The port releases tell when a rollout finished, so it can be verified.

features/verification implements it (health queries watched for a window, a verdict in
the deploy's thread); releases only calls `rollout_finished` from its last step, without
importing that feature. `NoVerification` is the null object when it is not wired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol


@dataclass(frozen=True)
class FinishedRollout:
    """A deploy or rollback whose rollout finished: what, where, when, and its Run."""

    run_id: str
    kind: Literal["deploy", "rollback"]
    service: str
    env: str
    version: str
    """The version deployed, or where a rollback went (`revision 7`)."""
    requested_by: str
    started_at: datetime
    finished_at: datetime


class RolloutVerifier(Protocol):
    async def rollout_finished(self, rollout: FinishedRollout) -> str | None:
        """Schedule the verification (idempotent on the Run id: a step run again after a
        crash schedules nothing new). One line for the Run's progress, or None."""
        ...


class NoVerification:
    """Nothing is verified."""

    async def rollout_finished(self, rollout: FinishedRollout) -> str | None:
        return None
