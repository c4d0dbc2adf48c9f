"""The verification feature's table: one row per verified deploy or rollback.

The row is written when the rollout finishes (`watching`) and given its verdict when the
window is over (`healthy`, `degraded`, `unknown` when Prometheus had no data). It is the
bot's own record of how each release went, for the Roll back button (which trusts only
the Run id a button carries), the chart, and later DORA and the Home tab.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, utcnow


class VerificationRow(Base):
    """One deploy or rollback watched after its rollout; its id is the release Run's."""

    __tablename__ = "verifications"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    service: Mapped[str] = mapped_column(String(80))
    environment: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    window_seconds: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str | None] = mapped_column(String(40))
    thread_key: Mapped[str | None] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), default="watching")
    results: Mapped[dict[str, Any]] = mapped_column(default=dict)
    verdict_at: Mapped[datetime | None]
    rollback_run: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_verifications_service_env", "service", "environment"),)
