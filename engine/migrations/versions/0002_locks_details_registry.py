"""run locks, step details, registered services

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE_LOCK_WHERE = "lock_key IS NOT NULL AND state IN ('waiting_approval', 'pending', 'running')"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("environment", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("lock_key", sa.String(length=200), nullable=True))
    op.create_index(
        "uq_runs_active_lock",
        "runs",
        ["lock_key"],
        unique=True,
        postgresql_where=sa.text(ACTIVE_LOCK_WHERE),
        sqlite_where=sa.text(ACTIVE_LOCK_WHERE),
    )
    with op.batch_alter_table("run_steps") as batch:
        batch.add_column(sa.Column("detail", sa.Text(), nullable=True))
    op.create_table(
        "catalog_services",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("registered_by", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("catalog_services")
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_column("detail")
    op.drop_index("uq_runs_active_lock", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lock_key")
        batch.drop_column("environment")
