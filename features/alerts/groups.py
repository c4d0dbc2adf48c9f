"""What the alert buttons may ask of the alert groups the bot keeps: `AlertGroups`.

The worker (features.alerts.worker) implements it on the feature's tables; every change
through it re-renders the group's parent message. The buttons get it at registration.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from catalog import Catalog
from engine.db import Database, new_id, utcnow
from engine.outbox import Outbox
from features.alerts.payload import Notification, expression_of
from features.alerts.tables import AlertGroupRow, AlertRow
from features.alerts.threads import NoChannel, ParentView, render_parent, route
from kernel.ids import SlackUserId
from kernel.ports.systems import DashboardLinks


@dataclass(frozen=True)
class AlertGroupInfo:
    """One alert group as the buttons need it."""

    id: str
    channel: str
    status: str
    """firing or resolved."""
    common_labels: dict[str, str]
    service: str | None
    """The catalog service it belongs to (its `service` label), if that is in the catalog."""
    team: str | None
    """The owning team: the service's owner, or the `team` label if that team exists."""
    silence_id: str | None
    expressions: tuple[str, ...]
    """The distinct PromQL expressions of its alerts (from their generator URLs)."""


class AlertGroups(Protocol):
    """Alert groups by id (the only thing an alert button's value carries)."""

    async def group(self, group_id: str) -> AlertGroupInfo | None: ...

    async def acknowledge(self, group_id: str, *, by: SlackUserId) -> bool:
        """Record who acked and when; False if the group does not exist."""
        ...

    async def record_silence(
        self, group_id: str, *, silence_id: str, until: datetime, by: SlackUserId
    ) -> None: ...

    async def clear_silence(self, group_id: str, *, by: SlackUserId) -> str | None:
        """Forget the group's silence; returns its id (None if it had none)."""
        ...


def thread_key(group_id: str) -> str:
    """The outbox message key of a group's parent message; replies use it as thread key."""
    return f"alert:{group_id}"


class GroupStore:
    """`AlertGroups` on the feature's tables, and what the worker does to one group:
    create it once, lock it, re-render its parent message."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        catalog: Catalog,
        *,
        grafana: DashboardLinks | None = None,
        window: float = 2.0,
    ) -> None:
        self.db, self.outbox, self.catalog, self.grafana = db, outbox, catalog, grafana
        self.window = timedelta(seconds=window)
        self.dialect: Any = postgresql if db.is_postgres else sqlite

    def find_or_create(self, session: Session, notification: Notification) -> str:
        """The group's id; created with a conditional INSERT, so racing replicas make one."""
        key_hash = notification.group_key_hash()
        existing = session.execute(
            select(AlertGroupRow.id).where(AlertGroupRow.group_key_hash == key_hash)
        ).scalar()
        if existing is not None:
            return existing
        try:
            where = route(self.catalog, notification.common_labels)
        except NoChannel as exc:
            raise ValueError(str(exc)) from None
        now = utcnow()
        inserted = session.execute(
            self.dialect.insert(AlertGroupRow)
            .values(
                id=new_id(),
                group_key_hash=key_hash,
                group_key=notification.group_key,
                receiver=notification.receiver[:200],
                channel=where.channel,
                route_note=where.note,
                common_labels=notification.common_labels,
                common_annotations=notification.common_annotations,
                external_url=notification.external_url or None,
                status=notification.status,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["group_key_hash"])
            .returning(AlertGroupRow.id)
        ).scalar()
        return (
            inserted
            or session.execute(
                select(AlertGroupRow.id).where(AlertGroupRow.group_key_hash == key_hash)
            ).scalar_one()
        )

    def locked(self, session: Session, group_id: str) -> AlertGroupRow:
        query = select(AlertGroupRow).where(AlertGroupRow.id == group_id)
        if self.db.is_postgres:
            query = query.with_for_update()
        return session.execute(query.execution_options(populate_existing=True)).scalar_one()

    def refresh(self, session: Session, group: AlertGroupRow) -> None:
        """Recount the group, render its parent, enqueue it if it changed; schedule a reply."""
        alerts = list(
            session.execute(select(AlertRow).where(AlertRow.group_id == group.id)).scalars()
        )
        firing = [a for a in alerts if a.status == "firing"]
        group.status = "firing" if firing else "resolved"
        if group.reply_due_at is None and any(a.announced != a.status for a in alerts):
            group.reply_due_at = utcnow() + self.window
        text, blocks = render_parent(self._parent_view(group, alerts))
        rendered = hashlib.sha256(json.dumps([text, blocks], sort_keys=True).encode()).hexdigest()
        if rendered == group.rendered:
            return
        key = thread_key(group.id)
        if group.rendered is None:
            self.outbox.enqueue_post(
                session, group.channel, text=text, blocks=blocks, message_key=key
            )
        else:
            self.outbox.enqueue_update(session, key, text=text, blocks=blocks)
        group.rendered = rendered

    def _parent_view(self, group: AlertGroupRow, alerts: list[AlertRow]) -> ParentView:
        labels: dict[str, str] = dict(group.common_labels)
        firing = [a for a in alerts if a.status == "firing"]
        since = min((a.starts_at for a in firing or alerts), default=None)
        ends = [a.ends_at for a in alerts if a.ends_at is not None]
        resolved_at = max(ends) if not firing and ends else None
        service = self.catalog.model.services.get(labels.get("service", ""))
        runbook = dict(group.common_annotations).get("runbook_url") or (
            service.runbook if service else None
        )
        dashboard = (service.grafana_dashboard if service else None) or (
            self.catalog.model.platform.grafana_default_dashboard
        )
        grafana_url = None
        if self.grafana is not None and dashboard:
            variables: dict[str, str] = {k: labels[k] for k in ("service", "env") if k in labels}
            grafana_url = self.grafana.dashboard(
                dashboard,
                start=since - GRAFANA_MARGIN if since else None,
                end=resolved_at + GRAFANA_MARGIN if resolved_at else None,
                variables=variables,
            )
        return ParentView(
            group_id=group.id,
            status=group.status,
            common_labels=labels,
            common_annotations=dict(group.common_annotations),
            firing=len(firing),
            resolved=len(alerts) - len(firing),
            since=since,
            resolved_at=resolved_at,
            note=group.route_note,
            grafana_url=grafana_url,
            runbook_url=runbook,
            acked_by=group.acked_by,
            acked_at=group.acked_at,
            silenced_by=group.silenced_by,
            silenced_until=group.silenced_until,
            can_query=any(expression_of(a.generator_url) for a in alerts),
            can_rollback=service is not None and labels.get("env") in (service.environments),
        )

    async def group(self, group_id: str) -> AlertGroupInfo | None:
        def read(session: Session) -> AlertGroupInfo | None:
            group = session.get(AlertGroupRow, group_id)
            if group is None:
                return None
            urls = session.execute(
                select(AlertRow.generator_url).where(AlertRow.group_id == group_id)
            ).scalars()
            labels: dict[str, str] = dict(group.common_labels)
            try:  # whose it is, as the catalog says now
                owner = route(self.catalog, labels)
                service, team = owner.service, owner.team
            except NoChannel:
                service = team = None
            return AlertGroupInfo(
                id=group.id,
                channel=group.channel,
                status=group.status,
                common_labels=labels,
                service=service,
                team=team,
                silence_id=group.silence_id,
                expressions=tuple(dict.fromkeys(e for e in map(expression_of, urls) if e)),
            )

        return await self.db.run(read)

    async def acknowledge(self, group_id: str, *, by: SlackUserId) -> bool:
        return await self._change(group_id, acked_by=by, acked_at=utcnow())

    async def record_silence(
        self, group_id: str, *, silence_id: str, until: datetime, by: SlackUserId
    ) -> None:
        await self._change(group_id, silence_id=silence_id, silenced_until=until, silenced_by=by)

    async def clear_silence(self, group_id: str, *, by: SlackUserId) -> str | None:
        group = await self.group(group_id)
        if group is None or group.silence_id is None:
            return None
        await self._change(group_id, silence_id=None, silenced_until=None, silenced_by=None)
        return group.silence_id

    async def _change(self, group_id: str, **values: Any) -> bool:
        def change(session: Session) -> bool:
            # The UPDATE comes first: it takes the row (and SQLite's write) lock at once.
            changed = session.execute(
                update(AlertGroupRow).where(AlertGroupRow.id == group_id).values(**values)
            )
            if not getattr(changed, "rowcount", 0):
                return False
            self.refresh(session, self.locked(session, group_id))
            return True

        changed = await self.db.run(change)
        self.outbox.notify()
        return changed


GRAFANA_MARGIN = timedelta(minutes=30)
"""The Grafana link shows this much before the first alert and after the last resolution."""
