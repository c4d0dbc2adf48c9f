"""Alertmanager alerts in, one living Slack thread per alert group out.

`POST /alerts/alertmanager` checks the bearer token, reads at most 1 MiB, validates the
version 4 payload and stores it in `alert_notifications` before answering 200, so a
restart loses nothing. A worker applies stored notifications in order:

- the group (`groupKey`) is created with a conditional INSERT on its unique hash, so
  Alertmanager peers in HA (each sends the same notification) and several bot replicas
  make one group, hence one thread;
- each alert is upserted by (group, fingerprint), ignoring updates older than what is
  stored (an earlier `startsAt`, or "firing" after "resolved" for the same start);
- the parent message (outbox key `alert:<group id>`) is re-rendered and enqueued only
  when it changed; the outbox coalesces pending updates of one message into one;
- changes not yet told in the thread are told in one reply once the group's reply is
  due (`window` seconds after the first change) and its previous reply has been sent,
  so a storm costs each group at most one pending update and one pending reply.

On PostgreSQL, notification rows are claimed with `FOR UPDATE SKIP LOCKED` and group
rows are locked while they change, so replicas share the work and never race a count.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import itertools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapters.protocols import DashboardLinks
from alerts.payload import Alert, Notification, PayloadError, expression_of, parse
from alerts.store import AlertGroupInfo, thread_key
from alerts.threads import AlertLine, NoChannel, ParentView, render_parent, render_reply, route
from bot.db import (
    AlertGroupRow,
    AlertNotificationRow,
    AlertRow,
    Database,
    DatabaseUnavailable,
    OutboxRow,
    new_id,
    utcnow,
)
from bot.domain import SlackUserId
from bot.http import read_bounded
from bot.metrics import Metrics
from bot.outbox import Outbox
from catalog import Catalog

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BODY = 1024 * 1024
"""Alertmanager notifications are far smaller (it truncates at max_alerts)."""
BATCH = 500
"""Notifications applied in one transaction."""
GRAFANA_MARGIN = timedelta(minutes=30)
"""The Grafana link shows this much before the first alert and after the last resolution."""
OUTCOMES = {
    200: "queued",
    400: "malformed",
    401: "unauthorized",
    413: "too_large",
    503: "refused",
}
"""The receiver's answers as the outcome label of platform_bot_alert_notifications."""
NOT_CONFIGURED = (
    "The Alertmanager webhook is not configured on this bot: set ALERTMANAGER_WEBHOOK_TOKEN "
    "and send it from Alertmanager as a bearer token (http_config.authorization)."
)


class AlertIntake:
    """The webhook receiver, the worker that turns notifications into threads, and the
    `AlertGroups` port the alert buttons use."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        catalog: Catalog,
        *,
        token: str | None,
        grafana: DashboardLinks | None = None,
        window: float = 2.0,
        poll_interval: float = 2.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.db, self.outbox, self.catalog = db, outbox, catalog
        self.token, self.grafana = token, grafana
        self.window = timedelta(seconds=window)
        self.poll_interval = poll_interval
        self.metrics = metrics
        self.wakeup = asyncio.Event()
        self._store = _GroupCommit(db)
        self._dialect: Any = postgresql if db.is_postgres else sqlite
        self._upsert = _alert_upsert(self._dialect)

    # -- the receiver ------------------------------------------------------------------

    async def receive(self, request: web.Request) -> web.Response:
        """POST /alerts/alertmanager: authenticate, bound, validate, store, answer 200."""
        response = await self._receive(request)
        if self.metrics is not None:
            outcome = OUTCOMES.get(response.status, str(response.status))
            self.metrics.alert_notifications.labels(outcome).inc()
        return response

    async def _receive(self, request: web.Request) -> web.Response:
        if not self.token:
            return web.Response(status=503, text=NOT_CONFIGURED)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            return web.Response(
                status=401,
                text="Missing or wrong bearer token for the Alertmanager webhook.",
                headers={"WWW-Authenticate": 'Bearer realm="alertmanager"'},
            )
        body = await read_bounded(request, MAX_BODY)
        if body is None:
            return web.Response(
                status=413, text=f"The body is larger than {MAX_BODY // 1024} KiB; nothing stored."
            )
        try:
            notification = parse(body)
        except PayloadError as exc:
            return web.Response(status=400, text=f"Not an Alertmanager notification: {exc}")
        row = AlertNotificationRow(
            group_key_hash=notification.group_key_hash(), payload=json.loads(body)
        )
        try:
            await self._store.add(row)
        except DatabaseUnavailable:
            return web.Response(status=503, text="The database is unavailable; retry later.")
        self.wakeup.set()
        return web.json_response({"status": "queued"})

    # -- the worker ----------------------------------------------------------------------

    async def work(self, stop: asyncio.Event) -> None:
        """Apply notifications and send due replies until `stop` is set."""
        while not stop.is_set():
            self.wakeup.clear()
            try:
                applied = await self.apply_pending()
                next_due = await self.flush_replies()
            except Exception:  # keep working; a broken database is retried next loop
                log.exception("alert intake failed; retrying")
                applied, next_due = 0, self.poll_interval * 4
            if applied >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    _either(stop, self.wakeup), timeout=min(next_due, self.poll_interval)
                )

    async def apply_pending(self) -> int:
        """Apply up to BATCH stored notifications in one transaction; how many were applied.

        If the batch fails (a payload that crashes the code), the notifications are applied
        one by one instead, and the one that fails is marked failed with the reason.
        """
        try:
            applied = await self._write(lambda s: self._apply_batch(s, BATCH))
        except DatabaseUnavailable:
            raise
        except Exception:
            log.exception("applying alert notifications failed; isolating the bad one")
            applied = 0
            for _ in range(BATCH):
                try:
                    done = await self._write(lambda s: self._apply_batch(s, 1))
                except DatabaseUnavailable:
                    raise
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                    await self.db.run(functools.partial(_fail_first_pending, reason=reason))
                    continue
                if not done:
                    break
                applied += done
        if applied:
            self.outbox.notify()
            if self.metrics is not None:
                self.metrics.alert_notifications_applied.inc(applied)
        return applied

    async def _write(self, work: Callable[[Session], T]) -> T:
        """Run `work` in a transaction. On SQLite (one writer at a time) the worker takes
        turns with the receiver through one fair lock, instead of SQLite's busy-wait,
        which lets a long apply starve the receiver; PostgreSQL needs no turns."""
        if self.db.is_postgres:
            return await self.db.run(work)
        async with self._store.lock:
            return await self.db.run(work)

    def _apply_batch(self, session: Session, limit: int) -> int:
        candidates = (
            select(AlertNotificationRow.id)
            .where(AlertNotificationRow.state == "pending")
            .order_by(AlertNotificationRow.id)
            .limit(limit)
        )
        if self.db.is_postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        ids = list(session.execute(candidates).scalars())
        if not ids:
            return 0
        # Claim with a conditional UPDATE: a notification another worker took in between
        # is not ours (on SQLite this also takes the write lock for the whole batch).
        claimed = session.execute(
            update(AlertNotificationRow)
            .where(AlertNotificationRow.id.in_(ids), AlertNotificationRow.state == "pending")
            .values(state="done", processed_at=utcnow())
            .returning(AlertNotificationRow.id)
        ).scalars()
        rows = list(
            session.execute(
                select(AlertNotificationRow).where(AlertNotificationRow.id.in_(list(claimed)))
            ).scalars()
        )
        # One group's notifications stay in order; groups are locked in one global order,
        # so two replicas never deadlock.
        rows.sort(key=lambda row: (row.group_key_hash, row.id))
        for _, same_group in itertools.groupby(rows, key=lambda row: row.group_key_hash):
            notifications = [Notification.model_validate(r.payload) for r in same_group]
            self._apply(session, notifications)
        return len(rows)

    def _apply(self, session: Session, notifications: list[Notification]) -> None:
        """Apply one group's notifications, oldest first: find or create the group, upsert
        its alerts (ignoring updates older than what is stored), refresh its messages."""
        latest, now = notifications[-1], utcnow()
        group = self._locked_group(session, self._group_id(session, latest))
        if group.common_labels != latest.common_labels:
            group.common_labels = latest.common_labels
        if group.common_annotations != latest.common_annotations:
            group.common_annotations = latest.common_annotations
        newest: dict[str, Alert] = {}
        for alert in (alert for n in notifications for alert in n.alerts):
            seen = newest.get(alert.fingerprint)
            if seen is None or _order(alert) >= _order(seen):
                newest[alert.fingerprint] = alert
        if newest:
            session.execute(
                self._upsert,
                [
                    {
                        "group_id": group.id,
                        "fingerprint": alert.fingerprint,
                        "status": alert.status,
                        "labels": alert.labels,
                        "annotations": alert.annotations,
                        "starts_at": alert.starts_at or now,
                        "ends_at": alert.ends_at if alert.status == "resolved" else None,
                        "generator_url": alert.generator_url or None,
                        "updated_at": now,
                    }
                    for alert in newest.values()
                ],
            )
        self._refresh(session, group)

    def _group_id(self, session: Session, notification: Notification) -> str:
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
            self._dialect.insert(AlertGroupRow)
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

    def _locked_group(self, session: Session, group_id: str) -> AlertGroupRow:
        query = select(AlertGroupRow).where(AlertGroupRow.id == group_id)
        if self.db.is_postgres:
            query = query.with_for_update()
        return session.execute(query.execution_options(populate_existing=True)).scalar_one()

    def _refresh(self, session: Session, group: AlertGroupRow) -> None:
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

    async def flush_replies(self) -> float:
        """Post the due coalesced replies; seconds until the next one is due."""
        posted, next_due = await self._write(self._flush_due)
        if posted:
            self.outbox.notify()
        return next_due

    def _flush_due(self, session: Session) -> tuple[int, float]:
        now = utcnow()
        due = (
            select(AlertGroupRow)
            .where(AlertGroupRow.reply_due_at <= now)
            .order_by(AlertGroupRow.reply_due_at)
            .limit(BATCH)
        )
        if self.db.is_postgres:
            due = due.with_for_update(skip_locked=True)
        posted = waiting = 0
        for group in list(session.execute(due).scalars()):
            key = thread_key(group.id)
            if self._not_out_yet(session, key):  # tell it all once the last one is out
                waiting += 1
                continue
            # Claim the reply with a conditional UPDATE, so two workers never both tell it.
            # (Only now: on SQLite a write holds the database's one write lock.)
            claimed = session.execute(
                update(AlertGroupRow)
                .where(AlertGroupRow.id == group.id, AlertGroupRow.reply_due_at <= now)
                .values(reply_due_at=None)
            )
            if not getattr(claimed, "rowcount", 0):
                continue
            changed = list(
                session.execute(
                    select(AlertRow)
                    .where(
                        AlertRow.group_id == group.id,
                        or_(AlertRow.announced.is_(None), AlertRow.announced != AlertRow.status),
                    )
                    .order_by(AlertRow.starts_at, AlertRow.id)
                ).scalars()
            )
            if not changed:
                continue
            session.refresh(group)
            text = render_reply(
                [_line(a) for a in changed],
                common_labels=dict(group.common_labels),
                common_summary=dict(group.common_annotations).get("summary"),
                all_resolved=group.status == "resolved",
            )
            self.outbox.enqueue_post(session, group.channel, text=text, thread_key=key)
            for alert in changed:
                alert.announced = alert.status
            posted += 1
        if waiting:  # look again after a window, not in a tight loop
            return posted, self.window.total_seconds()
        soonest = session.execute(select(func.min(AlertGroupRow.reply_due_at))).scalar()
        wait = (soonest - utcnow()).total_seconds() if soonest else self.poll_interval
        return posted, max(0.05, wait)

    @staticmethod
    def _not_out_yet(session: Session, key: str) -> bool:
        """Whether the parent `key` or a reply in its thread still waits in the outbox."""
        return (
            session.execute(
                select(OutboxRow.id).where(
                    or_(OutboxRow.thread_key == key, OutboxRow.message_key == key),
                    OutboxRow.method == "chat.postMessage",
                    OutboxRow.state.in_(("pending", "sending")),
                )
            ).first()
            is not None
        )

    # -- the AlertGroups port (for the buttons) -----------------------------------------

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
            self._refresh(session, self._locked_group(session, group_id))
            return True

        changed = await self.db.run(change)
        self.outbox.notify()
        return changed


def _order(alert: Alert) -> tuple[datetime, bool]:
    """Which of two updates of one alert is newer: a later start, or resolved over firing."""
    return (alert.starts_at or datetime.max.replace(tzinfo=UTC), alert.status == "resolved")


def _alert_upsert(dialect: Any) -> Any:
    """INSERT an alert, or UPDATE it unless the stored one is newer (see `_order`)."""
    insert = dialect.insert(AlertRow)
    newer = or_(
        AlertRow.starts_at < insert.excluded.starts_at,
        and_(
            AlertRow.starts_at == insert.excluded.starts_at,
            or_(AlertRow.status == "firing", insert.excluded.status == "resolved"),
        ),
    )
    changing = ("status", "labels", "annotations", "starts_at", "ends_at", "generator_url")
    return insert.on_conflict_do_update(
        index_elements=["group_id", "fingerprint"],
        set_={key: insert.excluded[key] for key in (*changing, "updated_at")},
        where=newer,
    )


class _GroupCommit:
    """Stores rows that concurrent requests queue in one transaction: under a storm, one
    commit (one fsync) serves many requests instead of one each. `add` returns once its
    row is committed."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.queue: list[tuple[AlertNotificationRow, asyncio.Future[None]]] = []
        self.lock = asyncio.Lock()

    async def add(self, row: AlertNotificationRow) -> None:
        future = asyncio.get_running_loop().create_future()
        self.queue.append((row, future))
        async with self.lock:
            if not future.done():  # nobody committed it while we waited: commit all queued
                batch, self.queue = self.queue, []
                try:
                    await self.db.run(lambda session: session.add_all([r for r, _ in batch]))
                except Exception as exc:
                    for _, waiting in batch:
                        waiting.set_exception(exc)
                else:
                    for _, waiting in batch:
                        waiting.set_result(None)
        await future


def _line(alert: AlertRow) -> AlertLine:
    return AlertLine(
        status=alert.status,
        labels=dict(alert.labels),
        annotations=dict(alert.annotations),
        starts_at=alert.starts_at,
        ends_at=alert.ends_at,
    )


def _fail_first_pending(session: Session, reason: str) -> None:
    first = session.execute(
        select(AlertNotificationRow)
        .where(AlertNotificationRow.state == "pending")
        .order_by(AlertNotificationRow.id)
        .limit(1)
    ).scalar()
    if first is not None:
        log.error("alert notification refused", extra={"notification": first.id, "error": reason})
        first.state, first.error, first.processed_at = "failed", reason, utcnow()


async def _either(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


__all__ = ["AlertIntake"]
