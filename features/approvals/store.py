"""Approval requests and votes in the database: every decision is a conditional UPDATE.

Each method takes the caller's session, so a decision, the Run it releases or cancels,
the card update, the note to the requester and the audit entries commit together or
not at all. Votes are serialised per request: on PostgreSQL the request row is locked
(`SELECT ... FOR UPDATE`) before anything is read, so two votes arriving together both
count; on SQLite a no-op UPDATE takes the database's write lock first, for the same
effect. A decision only moves a request out of `pending` (`WHERE state = 'pending'`),
so racing replicas, Slack redeliveries and the expiry sweeper decide it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.audit import record_in
from engine.db import new_id, utcnow
from engine.run_states import UnknownAction
from engine.runs import RunEngine
from features.approvals.card import card_key, render_card
from features.approvals.policy import Requirement
from features.approvals.request import OPEN, ApprovalRequest, Vote
from features.approvals.tables import ApprovalRow, ApprovalVoteRow
from kernel.actions import Action
from kernel.ids import SlackUserId
from kernel.mrkdwn import escape
from kernel.ports.platform import AuditEntry

"""A Run waiting for approval without a request this long was cut short; it is cancelled."""


@dataclass(frozen=True)
class VoteResult:
    """What happened to a vote: `outcome` is one of recorded, approved, rejected,
    already_voted, decided, expired, unknown."""

    outcome: str
    request: ApprovalRequest | None = None


class ApprovalStore:
    """The database side of approvals, on the Run engine's database and outbox."""

    def __init__(self, engine: RunEngine) -> None:
        self.engine = engine
        self.db = engine.db
        self.outbox = engine.outbox

    # -- asking ----------------------------------------------------------------------

    def open(
        self,
        session: Session,
        *,
        run_id: str,
        action: Action,
        requirement: Requirement,
        requested_by: SlackUserId,
        reason: str | None,
        channel: str,
        thread_key: str | None = None,
    ) -> tuple[ApprovalRequest, bool]:
        """The request for `run_id`, created (with its card) if there is none yet; the
        bool says whether it was created. Idempotent: one request per Run. The card is
        posted in `channel`, as a reply in the thread of our message `thread_key` if set."""
        now = utcnow()
        approval_id = new_id()
        dialect = postgresql if self.db.is_postgres else sqlite
        inserted = session.execute(
            dialect.insert(ApprovalRow)
            .values(
                id=approval_id,
                run_id=run_id,
                fingerprint=action.fingerprint(),
                policy=requirement.rule[:120],
                required=requirement.approvals,
                state=OPEN,
                requested_by=requested_by,
                reason=reason,
                card_channel=channel,
                card_message_key=card_key(approval_id),
                expires_at=now + timedelta(minutes=requirement.expires_minutes),
                created_at=now,
                rule=requirement.to_json(),
            )
            .on_conflict_do_nothing(index_elements=["run_id"])
            .returning(ApprovalRow.id)
        ).scalar()
        created = inserted is not None
        row = session.execute(select(ApprovalRow).where(ApprovalRow.run_id == run_id)).scalar_one()
        if created:
            _audit(session, requested_by, "approval.requested", row=row, action=action)
            self.show_card(session, row.id, thread_key=thread_key)
        request = self.load(session, row.id)
        assert request is not None
        return request, created

    # -- reading ---------------------------------------------------------------------

    def load(self, session: Session, approval_id: str) -> ApprovalRequest | None:
        row = session.get(ApprovalRow, approval_id)
        if row is None:
            return None
        return self._request(session, row)

    def listing(
        self, session: Session, user: SlackUserId, *, limit: int = 20
    ) -> tuple[list[ApprovalRequest], list[ApprovalRequest]]:
        """(open requests others asked for, oldest first; `user`'s recent requests)."""
        waiting = session.execute(
            select(ApprovalRow)
            .where(ApprovalRow.state == OPEN, ApprovalRow.requested_by != user)
            .order_by(ApprovalRow.created_at)
            .limit(limit)
        ).scalars()
        mine = session.execute(
            select(ApprovalRow)
            .where(ApprovalRow.requested_by == user)
            .order_by(ApprovalRow.created_at.desc())
            .limit(limit)
        ).scalars()
        return (
            [self._request(session, row) for row in waiting],
            [self._request(session, row) for row in mine],
        )

    # -- voting ----------------------------------------------------------------------

    def vote(
        self,
        session: Session,
        approval_id: str,
        *,
        voter: SlackUserId,
        approve: bool,
        reason: str | None,
    ) -> VoteResult:
        """Record one vote and decide the request if it settles it, exactly once."""
        row = self._locked(session, approval_id)
        if row is None:
            return VoteResult("unknown")
        if row.state != OPEN:
            return VoteResult("decided", self._request(session, row))
        if row.expires_at <= utcnow():
            self.close(session, approval_id, state="expired", by=voter, reason="expired")
            return VoteResult("expired", self.load(session, approval_id))
        try:
            with session.begin_nested():
                session.add(
                    ApprovalVoteRow(
                        approval_id=approval_id,
                        voter=voter,
                        vote="approve" if approve else "reject",
                        reason=reason,
                    )
                )
        except IntegrityError:
            return VoteResult("already_voted", self._request(session, row))
        action = self._action(session, row)
        _audit(
            session,
            voter,
            "approval.voted",
            row=row,
            action=action,
            detail={"vote": "approve" if approve else "reject", "reason": reason},
        )
        request = self._request(session, row)
        outcome = "recorded"
        if not approve:
            if self._decide(session, row, "rejected", closed_reason=reason):
                self.engine.cancel(
                    session, row.run_id, by=voter, reason=f"rejected: {reason or 'no reason given'}"
                )
                outcome = "rejected"
        elif request.approvals >= row.required and self._decide(
            session, row, "approved", closed_reason=None
        ):
            self.engine.release(session, row.run_id, by=voter)
            outcome = "approved"
        if outcome != "recorded":
            _audit(session, voter, f"approval.{outcome}", row=row, action=action)
            request = self._request(session, row)
            self._tell_requester(session, request, voter)
        self.show_card(session, approval_id)
        return VoteResult(outcome, request)

    def close(
        self, session: Session, approval_id: str, *, state: str, by: SlackUserId, reason: str
    ) -> bool:
        """Close an open request as `expired` or `stale` and cancel its Run; False if it
        was no longer open (someone else decided it first)."""
        row = session.get(ApprovalRow, approval_id)
        if row is None or not self._decide(session, row, state, closed_reason=reason):
            return False
        self.engine.cancel(session, row.run_id, by=by, reason=f"approval {state}: {reason}")
        _audit(session, by, f"approval.{state}", row=row, action=self._action(session, row))
        self._tell_requester(session, self._request(session, row), by)
        self.show_card(session, approval_id)
        return True

    def refused(self, session: Session, approval_id: str, *, voter: SlackUserId, why: str) -> None:
        """Audit a refused click (self-approval, not eligible, unknown request, ...)."""
        row = session.get(ApprovalRow, approval_id)
        if row is None:
            detail = {"approval": approval_id[:64], "why": why}
            record_in(
                session,
                AuditEntry(at=utcnow(), actor=voter, event="approval.refused", detail=detail),
            )
            return
        action = self._action(session, row)
        _audit(session, voter, "approval.refused", row=row, action=action, detail={"why": why})

    # -- sweeping --------------------------------------------------------------------

    def due(self, session: Session, *, limit: int = 50) -> list[str]:
        """Ids of open requests past their expiry."""
        return list(
            session.execute(
                select(ApprovalRow.id)
                .where(ApprovalRow.state == OPEN, ApprovalRow.expires_at <= utcnow())
                .order_by(ApprovalRow.expires_at)
                .limit(limit)
            ).scalars()
        )

    # -- the card --------------------------------------------------------------------

    def show_card(
        self, session: Session, approval_id: str, *, thread_key: str | None = None
    ) -> None:
        """Post the request's card (in the thread of `thread_key`, if set), or update it
        in place."""
        request = self.load(session, approval_id)
        row = session.get_one(ApprovalRow, approval_id)
        if request is None or row.card_channel is None:
            return
        text, blocks = render_card(request)
        self.outbox.enqueue_post_or_update(
            session,
            row.card_channel,
            card_key(approval_id),
            text=text,
            blocks=blocks,
            thread_key=thread_key,
        )
        self.outbox.notify()

    # -- helpers ---------------------------------------------------------------------

    def _locked(self, session: Session, approval_id: str) -> ApprovalRow | None:
        if self.db.is_postgres:
            query = select(ApprovalRow).where(ApprovalRow.id == approval_id).with_for_update()
            return session.execute(query).scalar_one_or_none()
        session.execute(  # takes SQLite's write lock before anything is read
            update(ApprovalRow).where(ApprovalRow.id == approval_id).values(state=ApprovalRow.state)
        )
        return session.get(ApprovalRow, approval_id, populate_existing=True)

    def _decide(
        self, session: Session, row: ApprovalRow, state: str, *, closed_reason: str | None
    ) -> bool:
        changed = session.execute(
            update(ApprovalRow)
            .where(ApprovalRow.id == row.id, ApprovalRow.state == OPEN)
            .values(state=state, decided_at=utcnow(), closed_reason=closed_reason)
        )
        session.refresh(row)
        return bool(getattr(changed, "rowcount", 0))

    def _tell_requester(self, session: Session, request: ApprovalRequest, by: str) -> None:
        what = escape(request.summary)
        messages = {
            "approved": f"Your request `{what}` was approved by <@{by}>; it runs now.",
            "rejected": f"Your request `{what}` was rejected by <@{by}>: "
            f"{escape(request.closed_reason or 'no reason given')}. Nothing was changed.",
            "expired": f"Your request `{what}` expired without enough approvals. "
            "Nothing was changed; ask again if it is still needed.",
            "stale": f"Your request `{what}` is stale: "
            f"{escape(request.closed_reason or 'the target changed')}. "
            "Nothing was changed; ask again.",
        }
        text = messages.get(request.state)
        if text:
            self.outbox.enqueue_post(session, request.requested_by, text=text)

    def _action(self, session: Session, row: ApprovalRow) -> Action | None:
        try:
            return self.engine.action_of(session, row.run_id)
        except UnknownAction:
            return None

    def _request(self, session: Session, row: ApprovalRow) -> ApprovalRequest:
        action = self._action(session, row)
        votes = session.execute(
            select(ApprovalVoteRow)
            .where(ApprovalVoteRow.approval_id == row.id)
            .order_by(ApprovalVoteRow.id)
        ).scalars()
        return ApprovalRequest(
            id=row.id,
            run_id=row.run_id,
            fingerprint=row.fingerprint,
            state=row.state,
            requested_by=row.requested_by,
            summary=action.summary() if action else "an action this bot no longer knows",
            change_lines=tuple(action.change_lines()) if action else (),
            requirement=Requirement.from_json(row.rule),
            expires_at=row.expires_at,
            created_at=row.created_at,
            service=action.affected_service() if action else None,
            environment=action.affected_environment() if action else None,
            reason=row.reason,
            closed_reason=row.closed_reason,
            votes=tuple(Vote(v.voter, v.vote, v.reason) for v in votes),
            action=action,
        )


def _audit(
    session: Session,
    actor: SlackUserId,
    event: str,
    *,
    row: ApprovalRow,
    action: Action | None,
    detail: dict[str, Any] | None = None,
) -> None:
    described = {"approval": row.id, "rule": row.policy, **(detail or {})}
    record_in(
        session, AuditEntry.of(actor, event, action=action, run_id=row.run_id, detail=described)
    )
