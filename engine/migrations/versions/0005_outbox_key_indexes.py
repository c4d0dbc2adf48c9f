"""outbox indexes on message and thread keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_message_key", "slack_outbox", ["message_key"])
    op.create_index("ix_outbox_thread_key", "slack_outbox", ["thread_key"])


def downgrade() -> None:
    op.drop_index("ix_outbox_thread_key", table_name="slack_outbox")
    op.drop_index("ix_outbox_message_key", table_name="slack_outbox")
