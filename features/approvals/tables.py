"""The approvals feature's tables: requests and their votes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import (
    Base,
    new_id,
    utcnow,
)


class ApprovalRow(Base):
    """A request for approval of one Run's Action, bound to its fingerprint.

    `rule` is the approval requirement it was asked under (features.approvals.policy.Requirement),
    kept so a later config change never moves the goalposts of an open request.
    `state` moves pending -> approved / rejected / expired / stale, once (conditional UPDATE).
    """

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    run_id: Mapped[str] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), index=True, unique=True
    )
    fingerprint: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(120))
    required: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(20), default="pending")
    requested_by: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(Text)
    card_channel: Mapped[str | None] = mapped_column(String(40))
    card_message_key: Mapped[str | None] = mapped_column(String(120))
    expires_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rule: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    closed_reason: Mapped[str | None] = mapped_column(Text)
    """Why it closed: the rejection's reason, or what made it stale."""

    __table_args__ = (Index("ix_approvals_state_expires", "state", "expires_at"),)


class ApprovalVoteRow(Base):
    """One person's vote on an approval request; one per person (a unique constraint)."""

    __tablename__ = "approval_votes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id", ondelete="CASCADE"))
    voter: Mapped[str] = mapped_column(String(40))
    vote: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("approval_id", "voter", name="uq_votes_once"),)
