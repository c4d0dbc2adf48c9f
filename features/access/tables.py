"""The access feature's table: grants, from asked to revoked."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base, utcnow


class AccessGrantRow(Base):
    """One grant; its id is the id of the Run that granted it.

    `state` moves granting -> active -> revoking -> revoked, each by a conditional
    UPDATE, so a revocation (and its announcement) happens once however many timers,
    replicas or clicks race. `generation` grows with every extension: timers and
    warnings of an older generation find nothing to do.
    """

    __tablename__ = "access_grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user: Mapped[str] = mapped_column(String(40))
    service: Mapped[str] = mapped_column(String(80))
    environment: Mapped[str] = mapped_column(String(80))
    team: Mapped[str] = mapped_column(String(80))
    role: Mapped[str] = mapped_column(String(20))
    cluster_role: Mapped[str] = mapped_column(String(200))
    subject_kind: Mapped[str] = mapped_column(String(10))
    subject_name: Mapped[str] = mapped_column(String(253))
    namespace: Mapped[str] = mapped_column(String(80))
    binding: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20), default="granting")
    generation: Mapped[int] = mapped_column(Integer, default=0)
    granted_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_access_grants_state", "state"),)
