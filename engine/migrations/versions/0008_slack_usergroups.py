"""Slack user-group members and the directory's state (engine.directory_tables)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_usergroup_members",
        sa.Column("usergroup_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("usergroup_id", "user_id"),
    )
    with op.batch_alter_table("slack_usergroup_members", schema=None) as batch_op:
        batch_op.create_index("ix_slack_usergroup_members_user_id", ["user_id"], unique=False)
    op.create_table(
        "slack_directory_state",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unavailable", sa.String(length=80), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("slack_directory_state")
    with op.batch_alter_table("slack_usergroup_members", schema=None) as batch_op:
        batch_op.drop_index("ix_slack_usergroup_members_user_id")
    op.drop_table("slack_usergroup_members")
