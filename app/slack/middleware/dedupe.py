"""Each Events API delivery once: Slack retries an event it thinks we missed, and the
retry may reach another replica, so delivered event ids are kept in the database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.db import Database, DatabaseUnavailable, ProcessedRequestRow
from engine.metrics import Metrics


class EventDedupe(AsyncMiddleware):
    """Answer a repeated `event_id` with 200 and do nothing (503 if the database is down,
    so Slack tries again later rather than the event being lost)."""

    def __init__(self, db: Database, metrics: Metrics) -> None:
        self.db, self.metrics = db, metrics

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        body = req.body
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            key = f"event:{str(event_id)[:100]}"
            try:
                first = await self.db.run(lambda s: first_time(s, key))
            except DatabaseUnavailable:
                return BoltResponse(status=503, body="database unavailable; retry later")
            if not first:
                self.metrics.requests.labels("event", "duplicate").inc()
                return BoltResponse(status=200, body="")
        return await next()


def first_time(session: Session, key: str) -> bool:
    """Record `key` as handled; False if it was already."""
    try:
        with session.begin_nested():
            session.add(ProcessedRequestRow(key=key))
        return True
    except IntegrityError:
        return False
