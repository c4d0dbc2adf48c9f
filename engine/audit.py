"""The audit log in the database (the `AuditLog` port commands use)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine.db import AuditRow, Database
from engine.logs import request_id
from kernel.ids import EnvironmentName, RunId, ServiceName, SlackUserId
from kernel.ports.platform import AuditEntry


class DatabaseAuditLog:
    """Append-only audit entries; newest first when read."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, entry: AuditEntry) -> None:
        await self.db.run(lambda session: record_in(session, entry))

    async def recent(
        self,
        *,
        service: ServiceName | None = None,
        limit: int = 20,
        actor: SlackUserId | None = None,
        event: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
    ) -> list[AuditEntry]:
        def query(session: Session) -> list[AuditEntry]:
            statement = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit).offset(offset)
            if service is not None:
                statement = statement.where(AuditRow.service == service)
            if actor is not None:
                statement = statement.where(AuditRow.actor == actor)
            if event is not None:
                statement = statement.where(
                    or_(AuditRow.event == event, AuditRow.event.startswith(event, autoescape=True))
                )
            if since is not None:
                statement = statement.where(AuditRow.at >= since)
            if until is not None:
                statement = statement.where(AuditRow.at < until)
            return [
                AuditEntry(
                    at=row.at,
                    actor=SlackUserId(row.actor),
                    event=row.event,
                    service=ServiceName(row.service) if row.service else None,
                    environment=EnvironmentName(row.environment) if row.environment else None,
                    run_id=RunId(row.run_id) if row.run_id else None,
                    detail=row.detail,
                )
                for row in session.execute(statement).scalars()
            ]

        return await self.db.run(query)


def record_in(session: Session, entry: AuditEntry) -> None:
    """Add an audit entry inside the caller's transaction."""
    session.add(
        AuditRow(
            at=entry.at,
            actor=entry.actor,
            event=entry.event,
            service=entry.service,
            environment=entry.environment,
            run_id=entry.run_id,
            request_id=request_id.get(),
            detail=entry.detail,
        )
    )
