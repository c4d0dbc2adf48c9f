"""The one door for every change: an Action becomes a durable Run, now or after approval.

`ChangeGate.propose` is what commands, buttons and alerts call. It asks the approval
policy (approvals/policy.py) whether the Action needs approval; if not, the Run is
queued at once; if so, the Run waits (`waiting_approval`), an approval request is
opened and its card posted in the owning team's channel. A platform admin may break
glass: run at once with a reason, flagged and announced in the audit channel.

The gate is also the approval desk: `vote` checks the clicker at that moment (not the
requester, in the rule's groups, not voted yet, request open and not expired, target
unchanged) and then records the vote in one transaction (bot/approval_store.py). A
background sweep expires requests nobody decided. A lock key on the Action keeps two
deploys or rollbacks of one service and environment from overlapping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from approvals.people import person_of
from approvals.policy import (
    Person,
    Requirement,
    eligible,
    not_eligible_message,
    requirement_for,
)
from approvals.request import OPEN, Answer, ApprovalRequest
from bot.approval_store import ApprovalStore
from bot.audit import record_in
from bot.db import DatabaseUnavailable, utcnow
from bot.domain import (
    Action,
    AuditEntry,
    ChangeRefused,
    Directory,
    Proposal,
    RunId,
    SlackChannelId,
    SlackUserId,
    SubmittedRun,
)
from bot.mrkdwn import escape
from bot.runs import RunEngine, RunLocked
from catalog import Catalog, membership_of

log = logging.getLogger(__name__)

BOT_ACTOR = SlackUserId("platform-bot")
"""Who the audit log names for what the sweeper does."""
DM_APPROVERS_AT_MOST = 3
"""Eligible approvers are sent a direct message when there are at most this many."""
SWEEP_SECONDS = 5.0
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


class ChangeGate:
    """`Changes` on the Run engine, with approval policy; and the `ApprovalDesk`."""

    def __init__(self, engine: RunEngine, *, catalog: Catalog, directory: Directory) -> None:
        self.engine = engine
        self.db = engine.db
        self.catalog = catalog
        self.directory = directory
        self.store = ApprovalStore(engine)

    # -- asking for a change -----------------------------------------------------------

    async def propose(
        self,
        action: Action,
        *,
        requested_by: SlackUserId,
        idempotency_key: str,
        reply_channel: SlackChannelId | None = None,
        announce_channel: str | None = None,
        reason: str | None = None,
        break_glass: bool = False,
    ) -> Proposal:
        """Queue the Run now, or open an approval request for it (see the module's doc);
        ChangeRefused with a message for the requester when it may not even be asked."""
        reason = (reason or "").strip() or None
        if announce_channel and await self._same_channel(announce_channel, reply_channel):
            announce_channel = None  # asked in the service's own channel: one message there
        flags: dict[str, Any] = {"announce_channel": announce_channel} if announce_channel else {}
        if reason:
            flags["reason"] = reason
        requirement = requirement_for(self.catalog.model, action)
        if break_glass:
            return await self._break_glass(
                action,
                requested_by=requested_by,
                idempotency_key=idempotency_key,
                reply_channel=reply_channel,
                reason=reason,
                flags=flags,
                requirement=requirement,
            )
        if requirement is None:
            submitted = await self._submit(
                action,
                requested_by=requested_by,
                idempotency_key=idempotency_key,
                reply_channel=reply_channel,
                flags=flags,
                state="pending",
            )
            return Proposal(run_id=submitted.run_id, created=submitted.created)
        if requirement.require_reason and not reason:
            raise ChangeRefused(
                f"Rule `{escape(requirement.rule)}` needs a reason for this change, so approvers "
                'know why. Ask again with a reason, e.g. `--reason "bad deploy at 14:02"`.'
            )
        approvers, someone = await self._approvers(requirement, requested_by)
        if not someone:
            raise ChangeRefused(
                f"Nobody can approve this: rule `{escape(requirement.rule)}` names "
                f"{requirement.approvers_text()}, and Slack knows nobody there but you. "
                "Ask a platform admin to fix `approval_policies` in platform.yml."
            )
        channel = self._card_channel(action, announce=announce_channel, reply=reply_channel)
        dms = sorted(approvers) if len(approvers) <= DM_APPROVERS_AT_MOST else []
        opened: list[ApprovalRequest] = []

        def open_request(session: Session, run_id: str) -> None:
            request, created = self.store.open(
                session,
                run_id=run_id,
                action=action,
                requirement=requirement,
                requested_by=requested_by,
                reason=reason,
                channel=channel,
            )
            if created:
                for user in dms:
                    self.engine.outbox.enqueue_post(
                        session, user, text=_approver_dm(request, channel)
                    )
            opened.append(request)

        # The request opens in the Run's own transaction: never a waiting Run without one.
        submitted = await self._submit(
            action,
            requested_by=requested_by,
            idempotency_key=idempotency_key,
            reply_channel=reply_channel,
            flags=flags,
            state="waiting_approval",
            on_created=open_request,
        )
        if not opened:  # the same request again (a Slack retry): its request already exists
            await self.db.run(lambda session: open_request(session, submitted.run_id))
        request = opened[-1]
        return Proposal(
            run_id=submitted.run_id,
            created=submitted.created,
            approval_id=request.id,
            rule=requirement.rule,
            expires_at=request.expires_at,
        )

    async def _same_channel(self, named: str, channel_id: str | None) -> bool:
        """Is `#payments` (as the catalog names it) the channel `C01PAYMENTS`?"""
        if channel_id is None or named == channel_id:
            return named == channel_id
        if not named.startswith("#"):
            return False
        return await self.directory.channel_name(channel_id) == named.removeprefix("#")

    async def _break_glass(
        self,
        action: Action,
        *,
        requested_by: SlackUserId,
        idempotency_key: str,
        reply_channel: SlackChannelId | None,
        reason: str | None,
        flags: dict[str, Any],
        requirement: Requirement | None,
    ) -> Proposal:
        email = await self.directory.email_of(requested_by)
        me = await membership_of(self.catalog, self.directory, requested_by, email=email)
        if not me.platform_admin:
            await self.db.run(
                lambda s: _audit(
                    s, requested_by, "break_glass.refused", action=action, reason="not an admin"
                )
            )
            raise ChangeRefused(
                "Only platform admins may break glass. Ask without it, and the change "
                "waits for its approvals."
            )
        if not reason:
            raise ChangeRefused(
                "Breaking glass needs a reason, for the audit log and the audit channel: "
                'add `--reason "what is on fire"`.'
            )
        flags["break_glass"] = True
        submitted = await self._submit(
            action,
            requested_by=requested_by,
            idempotency_key=idempotency_key,
            reply_channel=reply_channel,
            flags=flags,
            state="pending",
        )
        if submitted.created:
            rule = requirement.rule if requirement else "no rule"
            text = (
                f":rotating_light: *Break-glass*: <@{requested_by}> runs "
                f"`{escape(action.summary())}` without approval (rule `{escape(rule)}`). "
                f"Reason: {escape(reason)}"
            )
            audit_channel = self._audit_channel()

            def announce(session: Session) -> None:
                _audit(
                    session,
                    requested_by,
                    "run.break_glass",
                    action=action,
                    reason=reason,
                    run_id=submitted.run_id,
                )
                if audit_channel:
                    self.engine.outbox.enqueue_post(session, audit_channel, text=text)

            await self.db.run(announce)
            self.engine.outbox.notify()
        return Proposal(
            run_id=submitted.run_id,
            created=submitted.created,
            rule=requirement.rule if requirement else None,
            break_glass=True,
        )

    async def _submit(
        self,
        action: Action,
        *,
        requested_by: SlackUserId,
        idempotency_key: str,
        reply_channel: SlackChannelId | None,
        flags: dict[str, Any],
        state: str,
        on_created: Callable[[Session, str], None] | None = None,
    ) -> SubmittedRun:
        try:
            return await self.engine.submit(
                action,
                requested_by=requested_by,
                idempotency_key=idempotency_key,
                reply_channel=reply_channel,
                state=state,
                flags=flags,
                on_created=on_created,
            )
        except RunLocked as held:
            raise ChangeRefused(locked_message(action, held)) from None

    async def _approvers(
        self, requirement: Requirement, requester: SlackUserId
    ) -> tuple[set[str], bool]:
        """(Slack user ids who may approve, other than the requester; whether anyone at
        all may, counting team members listed only by e-mail)."""
        ids: set[str] = set()
        by_email = False
        groups = list(requirement.usergroups)
        listed: list[str] = []
        for name in requirement.teams:
            team = self.catalog.model.teams.get(name)
            if team is not None:
                listed += team.members
                groups += [team.slack_usergroup] if team.slack_usergroup else []
        if requirement.platform_admins:
            platform = self.catalog.model.platform
            listed += platform.admins
            groups += [platform.admins_usergroup] if platform.admins_usergroup else []
        for group in groups:
            ids |= await self.directory.usergroup_members(group)
        for member in listed:
            if SLACK_USER_ID.match(member):
                ids.add(member)
            else:
                by_email = True
        if not requirement.allow_own_team and requirement.owner_team in self.catalog.model.teams:
            owner = self.catalog.model.teams[requirement.owner_team]
            ids -= set(owner.members)
            if owner.slack_usergroup:
                ids -= await self.directory.usergroup_members(owner.slack_usergroup)
        ids.discard(requester)
        return ids, bool(ids) or by_email

    def _card_channel(
        self, action: Action, *, announce: str | None, reply: SlackChannelId | None
    ) -> str:
        """The owning team's channel (the service's own, if it has one)."""
        service = action.affected_service()
        if service is not None and service in self.catalog.model.services:
            return self.catalog.channel_of_service(service)
        fallback = announce or reply or self.catalog.model.platform.fallback_channel
        return fallback or self._audit_channel() or "#general"

    def _audit_channel(self) -> str | None:
        platform = self.catalog.model.platform
        return platform.audit_channel or platform.fallback_channel

    # -- the approval desk ---------------------------------------------------------------

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
            stale = await self._stale_reason(request)
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


def _approver_dm(request: ApprovalRequest, channel: str) -> str:
    where = channel if channel.startswith("#") else f"<#{channel}>"
    return (
        f"<@{request.requested_by}> asks for your approval: `{escape(request.summary)}` "
        f"(rule `{escape(request.requirement.rule)}`, expires {request.expires_at:%H:%M} UTC). "
        f"Approve or reject it on the card in {where}."
    )


def _audit(
    session: Session,
    actor: SlackUserId,
    event: str,
    *,
    action: Action,
    reason: str | None,
    run_id: RunId | None = None,
) -> None:
    record_in(
        session,
        AuditEntry(
            at=utcnow(),
            actor=actor,
            event=event,
            service=action.affected_service(),
            environment=action.affected_environment(),
            run_id=run_id,
            detail={"action": action.summary(), "reason": reason},
        ),
    )


def locked_message(action: Action, held: RunLocked) -> str:
    """`rollback of checkout/prod in progress by alice since 04:12` for the requester."""
    what = escape(action.lock_key() or action.kind)
    state = "waiting for approval" if held.state == "waiting_approval" else "in progress"
    return (
        f"A {escape(held.kind)} of `{what}` is {state}, asked by <@{held.requested_by}> "
        f"at {held.since:%H:%M} UTC. Wait for it to finish, then try again."
    )
