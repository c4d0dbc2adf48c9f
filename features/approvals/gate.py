"""The one door for every change: an Action becomes a durable Run, now or after approval.

`ChangeGate.propose` (the `Changes` port) is what commands, buttons and alerts call. It
asks the approval policy (features.approvals.policy) whether the Action needs approval;
if not, the Run is queued at once; if so, the Run waits (`waiting_approval`), an
approval request is opened in the Run's own transaction and its card posted in the
owning team's channel. A platform admin may break glass: run at once with a reason,
flagged and announced in the audit channel. A lock key on the Action keeps two deploys
or rollbacks of one service and environment from overlapping.

Votes are the desk's (features.approvals.desk).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from catalog import Catalog, membership_of
from engine.audit import record_in
from engine.run_states import RunLocked
from engine.runs import RunEngine
from features.approvals.policy import (
    Requirement,
    requirement_for,
)
from features.approvals.request import ApprovalRequest
from features.approvals.store import ApprovalStore
from kernel.actions import Action, SubmittedRun
from kernel.errors import ChangeRefused
from kernel.ids import RunId, SlackChannelId, SlackUserId
from kernel.mrkdwn import escape
from kernel.ports.platform import AuditEntry, Directory, Proposal

log = logging.getLogger(__name__)

DM_APPROVERS_AT_MOST = 3
"""Eligible approvers are sent a direct message when there are at most this many."""
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


class ChangeGate:
    """`Changes` on the Run engine, with approval policy."""

    def __init__(
        self, engine: RunEngine, store: ApprovalStore, *, catalog: Catalog, directory: Directory
    ) -> None:
        self.engine = engine
        self.db = engine.db
        self.store = store
        self.catalog = catalog
        self.directory = directory

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
        thread_key: str | None = None,
    ) -> Proposal:
        """Queue the Run now, or open an approval request for it (see the module's doc);
        ChangeRefused with a message for the requester when it may not even be asked.
        With `thread_key` the card and the progress are replies in that thread."""
        reason = (reason or "").strip() or None
        if reply_channel is None:
            thread_key = None  # a thread is in the reply channel
        if announce_channel and await self._same_channel(announce_channel, reply_channel):
            announce_channel = None  # asked in the service's own channel: one message there
        flags: dict[str, Any] = {"announce_channel": announce_channel} if announce_channel else {}
        if reason:
            flags["reason"] = reason
        if thread_key:
            flags["thread_key"] = thread_key
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
        channel = (
            reply_channel
            if thread_key and reply_channel
            else self._card_channel(action, announce=announce_channel, reply=reply_channel)
        )
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
                thread_key=thread_key,
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
        AuditEntry.of(actor, event, action=action, run_id=run_id, detail={"reason": reason}),
    )


def locked_message(action: Action, held: RunLocked) -> str:
    """`rollback of checkout/prod in progress by alice since 04:12` for the requester."""
    what = escape(action.lock_key() or action.kind)
    state = "waiting for approval" if held.state == "waiting_approval" else "in progress"
    return (
        f"A {escape(held.kind)} of `{what}` is {state}, asked by <@{held.requested_by}> "
        f"at {held.since:%H:%M} UTC. Wait for it to finish, then try again."
    )
