"""The alerts feature's tables: received notifications, groups (threads) and alerts."""

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
)
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import (
    Base,
    new_id,
    utcnow,
)


class AlertNotificationRow(Base):
    """One Alertmanager webhook delivery, stored as received until the worker applies it.

    The receiver answers 200 only after this row is committed, so a restart loses nothing.
    `state` moves pending -> done (or failed, with the reason, for a payload that crashed).
    """

    __tablename__ = "alert_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_key_hash: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_alert_notifications_state_id", "state", "id"),)


class AlertGroupRow(Base):
    """One Alertmanager group (`groupKey`) and its Slack thread (message key `alert:<id>`).

    `group_key_hash` (sha256 of the groupKey) is unique, so HA duplicates and racing
    replicas make one row, hence one thread.
    """

    __tablename__ = "alert_groups"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    group_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    group_key: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(80))
    route_note: Mapped[str | None] = mapped_column(Text)
    """Why the group went to the fallback channel (e.g. an unknown service)."""
    common_labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    common_annotations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    external_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="firing")
    rendered: Mapped[str | None] = mapped_column(String(64))
    """Hash of the parent message last enqueued, so identical updates are not sent."""
    reply_due_at: Mapped[datetime | None] = mapped_column(index=True)
    """When the coalesced thread reply for changes not yet told is due; None: nothing to tell."""
    acked_by: Mapped[str | None] = mapped_column(String(40))
    acked_at: Mapped[datetime | None]
    silence_id: Mapped[str | None] = mapped_column(String(80))
    silenced_by: Mapped[str | None] = mapped_column(String(40))
    silenced_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AlertRow(Base):
    """One alert of a group, by fingerprint; older updates never overwrite newer ones."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("alert_groups.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime | None]
    generator_url: Mapped[str | None] = mapped_column(Text)
    announced: Mapped[str | None] = mapped_column(String(20))
    """The status last told in the thread; differs from `status` until the next reply."""
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("group_id", "fingerprint", name="uq_alerts_group_fingerprint"),
    )
