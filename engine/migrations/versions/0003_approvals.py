"""approvals: the rule each request was asked under, why it closed, one request per Run

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 08:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(
            sa.Column("rule", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(sa.Column("closed_reason", sa.Text(), nullable=True))
        batch.drop_index("ix_approvals_run_id")
        batch.create_index("ix_approvals_run_id", ["run_id"], unique=True)
        batch.create_index("ix_approvals_state_expires", ["state", "expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_index("ix_approvals_state_expires")
        batch.drop_index("ix_approvals_run_id")
        batch.create_index("ix_approvals_run_id", ["run_id"], unique=False)
        batch.drop_column("closed_reason")
        batch.drop_column("rule")
