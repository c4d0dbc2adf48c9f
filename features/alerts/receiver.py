"""POST /alerts/alertmanager: Alertmanager's webhook, received into a durable queue.

The receiver checks the bearer token, reads at most 1 MiB, validates the version 4
payload and stores it in `alert_notifications` before answering 200, so a restart loses
nothing; then it wakes the worker (features.alerts.worker). Under a storm, concurrent
deliveries are committed together (one fsync for many).
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from engine.db import Database, DatabaseUnavailable
from engine.metrics import Metrics
from features.alerts.payload import PayloadError, parse
from features.alerts.tables import AlertNotificationRow
from features.kit.webhooks import read_bounded, same_secret

MAX_BODY = 1024 * 1024
"""Alertmanager notifications are far smaller (it truncates at max_alerts)."""
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


class AlertReceiver:
    """The webhook: authenticate, bound, validate, store, answer 200, wake the worker."""

    def __init__(
        self,
        db: Database,
        *,
        token: str | None,
        wakeup: asyncio.Event,
        turns: asyncio.Lock,
        metrics: Metrics | None = None,
    ) -> None:
        self.token, self.wakeup, self.metrics = token, wakeup, metrics
        self._store = GroupCommit(db, turns)

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
        if scheme.lower() != "bearer" or not same_secret(given.strip(), self.token):
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


class GroupCommit:
    """Stores rows that concurrent requests queue in one transaction: under a storm, one
    commit (one fsync) serves many requests instead of one each. `add` returns once its
    row is committed."""

    def __init__(self, db: Database, lock: asyncio.Lock) -> None:
        self.db = db
        self.queue: list[tuple[AlertNotificationRow, asyncio.Future[None]]] = []
        self.lock = lock
        """Turns with the worker on SQLite (one writer at a time); see AlertWorker."""

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
