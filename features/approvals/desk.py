"""The approval desk: where votes go, and every check happens at the moment of the click.

`vote` checks the clicker then (not the requester, in the rule's groups, not voted yet,
request open and not expired, target unchanged) and records the vote in one
transaction (features.approvals.store). When the target cannot be read (its system is
down or not configured), an approval is not recorded: the check fails closed, the
request stays open, and the approver is told to try again. A background sweep expires
requests nobody decided in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial

from sqlalchemy.orm import Session

from catalog import Catalog
from engine.db import DatabaseUnavailable, utcnow
from engine.runs import RunEngine
from features.approvals.people import person_of
from features.approvals.policy import (
    Person,
    Requirement,
    eligible,
    not_eligible_message,
)
from features.approvals.request import OPEN, Answer, ApprovalRequest
from features.approvals.store import ApprovalStore
from kernel.errors import AdapterError
from kernel.ids import SlackUserId
from kernel.mrkdwn import escape
from kernel.ports.platform import Directory

log = logging.getLogger(__name__)

BOT_ACTOR = SlackUserId("platform-bot")
"""Who the audit log names for what the sweeper does."""
SWEEP_SECONDS = 5.0


class Desk:
    """The `ApprovalDesk` on the approvals tables and the Run engine."""

    def __init__(
        self, engine: RunEngine, store: ApprovalStore, *, catalog: Catalog, directory: Directory
    ) -> None:
        self.engine = engine
        self.db = engine.db
        self.store = store
        self.catalog = catalog
        self.directory = directory

    async def request(self, approval_id: str) -> ApprovalRequest | None:
        return await self.db.run(lambda s: self.store.load(s, approval_id[:64]))

    async def refusal(self, approval_id: str, *, voter: SlackUserId, approve: bool) -> str | None:
        """Why `voter` may not vote on the request now, or None (audited when refused)."""
        approval_id = approval_id[:64]
        request = await self.request(approval_id)
        why = await self._why_not(request, voter=voter, approve=approve)
        if why is None:
            return None
        code, text = why
        await self.db.run(lambda s: self.store.refused(s, approval_id, voter=voter, why=code))
        return text

    async def vote(
        self, approval_id: str, *, voter: SlackUserId, approve: bool, reason: str | None = None
    ) -> Answer:
        """Check everything at this moment, then record the vote (deciding if it settles)."""
        approval_id = approval_id[:64]
        refused = await self.refusal(approval_id, voter=voter, approve=approve)
        if refused is not None:
            return Answer(refused)
        result = await self.db.run(
            lambda s: self.store.vote(s, approval_id, voter=voter, approve=approve, reason=reason)
        )
        request = result.request
        if result.outcome in ("approved", "recorded", "rejected") and request is not None:
            self.engine.wakeup.set()
            return Answer(_recorded_message(result.outcome, request), recorded=True)
        if result.outcome == "already_voted":
            return Answer(ALREADY_VOTED)
        if result.outcome == "unknown" or request is None:
            return Answer(UNKNOWN_REQUEST)
        return Answer(closed_message(request))

    async def listing(
        self, user: SlackUserId
    ) -> tuple[list[ApprovalRequest], list[ApprovalRequest]]:
        """(open requests `user` may vote on and has not, requests `user` asked for)."""
        waiting, mine = await self.db.run(lambda s: self.store.listing(s, user))
        mine_to_vote = []
        for request in waiting:
            person = await self._person(user, request.requirement)
            if eligible(request.requirement, person) and not request.voted(user):
                mine_to_vote.append(request)
        return mine_to_vote, mine

    async def _why_not(
        self, request: ApprovalRequest | None, *, voter: SlackUserId, approve: bool
    ) -> tuple[str, str] | None:
        """(audit code, message for the voter) when `voter` may not vote now."""
        if request is None:
            return "unknown", UNKNOWN_REQUEST
        if request.state != OPEN:
            return "closed", closed_message(request)
        if request.expires_at <= utcnow():
            await self.db.run(
                lambda s: self.store.close(
                    s, request.id, state="expired", by=voter, reason="expired"
                )
            )
            expired = await self.request(request.id)
            return "expired", closed_message(expired or request)
        if voter == request.requested_by:
            return "own_request", (
                "You asked for this change, so you cannot vote on it: four eyes means "
                f"someone else decides. It needs {request.requirement.approvers_text()}."
            )
        person = await self._person(voter, request.requirement)
        if not eligible(request.requirement, person):
            return "not_eligible", not_eligible_message(request.requirement, person)
        if request.voted(voter):
            return "already_voted", ALREADY_VOTED
        if approve:
            try:
                stale = await self._stale_reason(request)
            except AdapterError as exc:  # never approve what could not be checked
                log.warning("approval %s not recorded: the stale check failed: %s", request.id, exc)
                where = escape(request.environment or "the target")
                return "unchecked", (
                    f"I could not check {where} before recording your approval "
                    f"({escape(str(exc))}), so it was *not* recorded; the request stays open. "
                    "Try again in a minute."
                )
            if stale is not None:
                await self.db.run(
                    lambda s: self.store.close(s, request.id, state="stale", by=voter, reason=stale)
                )
                where = escape(request.environment or "The target")
                return "stale", (
                    f"{where} moved since this was asked: {escape(stale)}. The request is "
                    f"closed as stale and nothing was changed; <@{request.requested_by}> "
                    "must ask again."
                )
        return None

    async def _person(self, user: SlackUserId, requirement: Requirement) -> Person:
        return await person_of(
            self.catalog, self.directory, user, usergroups=requirement.usergroups
        )

    async def _stale_reason(self, request: ApprovalRequest) -> str | None:
        """Why the Action no longer matches what approvers are asked about, or None."""
        action = request.action
        if action is None:
            return "this bot no longer knows how to run it"
        if action.fingerprint() != request.fingerprint:
            return "the change itself is no longer the one asked for"
        return await self.engine.stale_reason(action)

    # -- expiry ----------------------------------------------------------------------

    async def sweep_once(self) -> int:
        """Expire every open request past its time (a waiting Run always has one: they are
        written in one transaction)."""
        expired = 0
        for approval_id in await self.db.run(self.store.due):
            expired += await self.db.run(partial(self._expire, approval_id=approval_id))
        if expired:
            self.engine.outbox.notify()
        return expired

    def _expire(self, session: Session, *, approval_id: str) -> int:
        closed = self.store.close(
            session, approval_id, state="expired", by=BOT_ACTOR, reason="expired"
        )
        return int(closed)

    async def sweep(self, stop: asyncio.Event, *, interval: float = SWEEP_SECONDS) -> None:
        """Sweep every `interval` seconds until `stop`; safe with several replicas."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                return
            try:
                await self.sweep_once()
            except DatabaseUnavailable:
                log.warning("approval sweep skipped: database unavailable")
            except Exception:
                log.exception("approval sweep failed; trying again later")


UNKNOWN_REQUEST = (
    "There is no such approval request; nothing was recorded. "
    "Type `/platform approvals` to see the requests waiting for you."
)
ALREADY_VOTED = "You already voted on this request; everyone votes once. Nothing was changed."


def closed_message(request: ApprovalRequest) -> str:
    """What a click on a request that is no longer open is told."""
    what = f"`{escape(request.summary)}`"
    if request.state == "approved":
        return f"The request for {what} was already approved; your click changed nothing."
    if request.state == "rejected":
        return f"The request for {what} was already rejected; your click changed nothing."
    if request.state == "expired":
        return (
            f"The request for {what} expired at {request.expires_at:%H:%M} UTC; nothing was "
            f"recorded. <@{request.requested_by}> can ask again."
        )
    return (
        f"The request for {what} is stale (the target changed since it was asked); nothing "
        f"was recorded. <@{request.requested_by}> must ask again."
    )


def _recorded_message(outcome: str, request: ApprovalRequest) -> str:
    what = f"`{escape(request.summary)}`"
    if outcome == "approved":
        return f"You approved {what}: that was the last approval needed, so it runs now."
    if outcome == "rejected":
        return f"You rejected {what}; nothing will change. <@{request.requested_by}> is told."
    needed = request.requirement.approvals - request.approvals
    return (
        f"You approved {what}: {request.approvals} of {request.requirement.approvals}; "
        f"it waits for {needed} more."
    )
