"""alerts: the Alertmanager notification queue, alert groups (threads) and their alerts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 08:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_key_hash", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _when("received_at", nullable=False),
        _when("processed_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_alert_notifications_state_id", "alert_notifications", ["state", "id"], unique=False
    )
    op.create_table(
        "alert_groups",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("group_key_hash", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("receiver", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=80), nullable=False),
        sa.Column("route_note", sa.Text(), nullable=True),
        sa.Column("common_labels", sa.JSON(), nullable=False),
        sa.Column("common_annotations", sa.JSON(), nullable=False),
        sa.Column("external_url", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("rendered", sa.String(length=64), nullable=True),
        _when("reply_due_at", nullable=True),
        sa.Column("acked_by", sa.String(length=40), nullable=True),
        _when("acked_at", nullable=True),
        sa.Column("silence_id", sa.String(length=80), nullable=True),
        sa.Column("silenced_by", sa.String(length=40), nullable=True),
        _when("silenced_until", nullable=True),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_key_hash"),
    )
    op.create_index("ix_alert_groups_reply_due_at", "alert_groups", ["reply_due_at"], unique=False)
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        _when("starts_at", nullable=False),
        _when("ends_at", nullable=True),
        sa.Column("generator_url", sa.Text(), nullable=True),
        sa.Column("announced", sa.String(length=20), nullable=True),
        _when("updated_at", nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["alert_groups.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("group_id", "fingerprint", name="uq_alerts_group_fingerprint"),
    )


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_index("ix_alert_groups_reply_due_at", table_name="alert_groups")
    op.drop_table("alert_groups")
    op.drop_index("ix_alert_notifications_state_id", table_name="alert_notifications")
    op.drop_table("alert_notifications")
