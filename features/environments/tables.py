"""The environments feature's table: one row per environment on demand, from asked to
gone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from engine.db import Base


class EnvironmentRow(Base):
    """One environment; its id is the id of the Run that created it.

    `state` moves creating -> ready -> deleting -> deleted (or creating -> failed ->
    deleting), each by a conditional UPDATE, so a teardown (and its message) happens once
    however many timers, replicas or clicks race. `generation` grows with every
    extension: timers of an older generation find nothing to do. A teardown that fails
    leaves the row `deleting` with `last_error` set, so its owner still sees it.
    """

    __tablename__ = "environments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(80))
    team: Mapped[str] = mapped_column(String(80))
    template: Mapped[str] = mapped_column(String(80))
    cluster: Mapped[str] = mapped_column(String(200))
    namespace: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(200))
    image: Mapped[str] = mapped_column(Text)
    size: Mapped[str] = mapped_column(String(40))
    cpu: Mapped[float] = mapped_column(Float)
    url: Mapped[str | None] = mapped_column(Text)
    creator: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(80))
    """The team channel holding the environment's thread."""
    preview: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """{project_id, project_path, iid, url} of a preview's merge request."""
    state: Mapped[str] = mapped_column(String(20), default="creating")
    generation: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ready_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[str | None] = mapped_column(String(40))

    __table_args__ = (
        Index("ix_environments_state", "state"),
        Index("ix_environments_name", "name"),
    )
