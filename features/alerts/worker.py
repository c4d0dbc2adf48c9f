"""The alert worker: stored notifications become one living Slack thread per group.

It applies stored notifications in order:

- the group (`groupKey`) is created with a conditional INSERT on its unique hash, so
  Alertmanager peers in HA (each sends the same notification) and several bot replicas
  make one group, hence one thread (features.alerts.groups);
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
import functools
import itertools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from engine.db import Database, DatabaseUnavailable, OutboxRow, utcnow
from engine.metrics import Metrics
from engine.outbox import Outbox
from engine.tasks import wait_any
from features.alerts.groups import GroupStore, thread_key
from features.alerts.payload import Alert, Notification
from features.alerts.tables import AlertGroupRow, AlertNotificationRow, AlertRow
from features.alerts.threads import AlertLine, render_reply

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 500
"""Notifications applied in one transaction."""


class AlertWorker:
    """Applies stored notifications to their groups and tells changes in the threads."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        groups: GroupStore,
        *,
        wakeup: asyncio.Event,
        turns: asyncio.Lock,
        poll_interval: float = 2.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.db, self.outbox, self.groups = db, outbox, groups
        self.wakeup, self.turns = wakeup, turns
        self.poll_interval = poll_interval
        self.metrics = metrics
        self._upsert = _alert_upsert(groups.dialect)

    async def work(self, stop: asyncio.Event) -> None:
        """Apply notifications and send due replies until `stop` is set."""
        while not stop.is_set():
            self.wakeup.clear()
            try:
                applied = await self.apply_pending()
                next_due = await self.flush_replies()
            except Exception:  # keep working; a broken database is retried next loop
                log.exception("alert worker failed; retrying")
                applied, next_due = 0, self.poll_interval * 4
            if applied >= BATCH:
                continue
            await wait_any(stop, self.wakeup, seconds=min(next_due, self.poll_interval))

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
        async with self.turns:
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
        group = self.groups.locked(session, self.groups.find_or_create(session, latest))
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
        self.groups.refresh(session, group)

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
            return posted, self.groups.window.total_seconds()
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
