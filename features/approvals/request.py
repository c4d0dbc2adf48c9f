"""An approval request as features see it, and the desk that takes votes on it.

The database side lives in `features.approvals.store`; the desk (features.approvals.desk)
checks people against the rule at click time. Buttons, forms and `/platform approvals`
see only what is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from features.approvals.policy import Requirement
from kernel.actions import Action
from kernel.ids import SlackUserId

OPEN = "pending"
FINAL_STATES = ("approved", "rejected", "expired", "stale")


@dataclass(frozen=True)
class Vote:
    voter: str
    vote: str
    """"approve" or "reject"."""
    reason: str | None = None


@dataclass(frozen=True)
class ApprovalRequest:
    """One request for approval: the change, the rule, the votes so far, how it ended."""

    id: str
    run_id: str
    fingerprint: str
    state: str
    requested_by: str
    summary: str
    change_lines: tuple[str, ...]
    requirement: Requirement
    expires_at: datetime
    created_at: datetime
    service: str | None = None
    environment: str | None = None
    reason: str | None = None
    closed_reason: str | None = None
    votes: tuple[Vote, ...] = field(default=())
    action: Action | None = None
    """The Action itself; None if no executor of this bot knows its kind any more."""

    @property
    def approvals(self) -> int:
        return sum(1 for v in self.votes if v.vote == "approve")

    def voted(self, user: str) -> bool:
        return any(v.voter == user for v in self.votes)


@dataclass(frozen=True)
class Answer:
    """What the desk says to a voter (mrkdwn, for them only), and whether it counted."""

    text: str
    recorded: bool = False


@runtime_checkable
class ApprovalDesk(Protocol):
    """Where votes go; every check happens here, at click time."""

    async def vote(
        self, approval_id: str, *, voter: SlackUserId, approve: bool, reason: str | None = None
    ) -> Answer:
        """Check everything, then record the vote, or refuse it saying why."""
        ...

    async def refusal(self, approval_id: str, *, voter: SlackUserId, approve: bool) -> str | None:
        """Why `voter` may not vote now (checked again when the vote arrives), or None."""
        ...

    async def request(self, approval_id: str) -> ApprovalRequest | None: ...

    async def listing(
        self, user: SlackUserId
    ) -> tuple[list[ApprovalRequest], list[ApprovalRequest]]:
        """(open requests `user` may vote on, recent requests `user` asked for)."""
        ...
