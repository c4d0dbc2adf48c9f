"""The outbox's deliverer: sends `slack_outbox` rows to Slack, in order per channel, at
Slack's pace, through 429s and outages, exactly once (see engine.outbox for the rows).

Several replicas may deliver from one database: a row is claimed with a conditional
UPDATE and a lease, so it is sent once. Rate buckets are per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from engine.db import Database, OutboxRow, SlackMessageRow, utcnow
from engine.metrics import Metrics
from engine.outbox import RATE_LIMITED, TRANSIENT_ERRORS, Outbox, lane
from engine.tasks import wait_any

log = logging.getLogger(__name__)


@dataclass
class _Bucket:
    """Token bucket for one channel."""

    tokens: float
    updated: float
    blocked_until: float = 0.0


class Deliverer:
    """Sends outbox rows to Slack, respecting per-channel rate limits and Retry-After."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        client: AsyncWebClient,
        metrics: Metrics,
        *,
        worker_id: str,
        rate_per_channel: float = 1.0,
        burst: int = 2,
        lease: timedelta = timedelta(seconds=60),
        poll_interval: float = 2.0,
        max_backoff: float = 60.0,
    ) -> None:
        self.db, self.outbox, self.client, self.metrics = db, outbox, client, metrics
        self.worker_id = worker_id
        self.rate, self.burst = rate_per_channel, burst
        self.lease, self.poll_interval, self.max_backoff = lease, poll_interval, max_backoff
        self._buckets: dict[str, _Bucket] = {}
        self._http: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; wake up early whenever something is enqueued."""
        while not stop.is_set():
            try:
                delay = await self.deliver_due()
            except Exception:  # keep delivering; a broken database is retried next loop
                log.exception("outbox delivery failed; retrying")
                delay = self.poll_interval * 4
            self.outbox.wakeup.clear()
            await wait_any(stop, self.outbox.wakeup, seconds=delay)
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def deliver_due(self) -> float:
        """Send what may be sent now; return how long until something else may be."""
        rows = await self.db.run(self._due_rows)
        depth, oldest = await self.db.run(_backlog)
        self.metrics.outbox_depth.set(depth)
        lag = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        self.metrics.outbox_lag.set(max(lag, 0.0))
        if not rows:
            return self.poll_interval
        heads: dict[str, OutboxRow] = {}
        for row in rows:
            heads.setdefault(lane(row), row)  # only the oldest row of each lane
        now, wall = time.monotonic(), utcnow()
        due = {lane: row for lane, row in heads.items() if row.not_before <= wall}
        ready = [
            row
            for lane, row in due.items()
            if row.method not in RATE_LIMITED or self._take_token(lane, now)
        ]
        await asyncio.gather(*(self._deliver(row) for row in ready))
        waits = [self._wait_for(lane, time.monotonic()) for lane in due if lane in self._buckets]
        waits += [
            (row.not_before - wall).total_seconds()
            for lane, row in heads.items()
            if lane not in due
        ]
        return max(0.01, min([*waits, self.poll_interval]))

    def _due_rows(self, session: Session) -> list[OutboxRow]:
        """The head of every channel's lane, plus pending ephemeral replies.

        Heads are chosen in SQL, so a backlog of thousands in one channel never hides
        another channel's message.
        """
        now = utcnow()
        claimable = or_(
            OutboxRow.state == "pending",
            (OutboxRow.state == "sending") & (OutboxRow.lease_until < now),
        )
        position = (
            func.row_number()
            .over(partition_by=OutboxRow.channel, order_by=OutboxRow.id)
            .label("position")
        )
        lanes = (
            select(OutboxRow.id, position)
            .where(claimable, OutboxRow.method.in_(RATE_LIMITED))
            .subquery()
        )
        heads = select(lanes.c.id).where(lanes.c.position == 1)
        replies = (
            select(OutboxRow.id)
            .where(claimable, OutboxRow.method.not_in(RATE_LIMITED))
            .order_by(OutboxRow.id)
            .limit(200)
        )
        return list(
            session.execute(
                select(OutboxRow)
                .where(or_(OutboxRow.id.in_(heads), OutboxRow.id.in_(replies)))
                .order_by(OutboxRow.id)
            ).scalars()
        )

    def _take_token(self, channel: str, now: float) -> bool:
        bucket = self._buckets.setdefault(channel, _Bucket(tokens=self.burst, updated=now))
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if now < bucket.blocked_until or bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _wait_for(self, channel: str, now: float) -> float:
        bucket = self._buckets[channel]
        token_wait = max(0.0, (1 - bucket.tokens) / self.rate)
        return max(token_wait, bucket.blocked_until - now)

    async def _deliver(self, row: OutboxRow) -> None:
        claimed = await self.db.run(lambda s: self._claim(s, row.id))
        if claimed is None:
            return  # another replica has it, or it was already sent
        try:
            result = await self._call(claimed)
        except SlackApiError as exc:
            await self._failed(claimed, exc)
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.metrics.slack_api_errors.labels(claimed.method, type(exc).__name__).inc()
            await self._retry_later(claimed, f"{type(exc).__name__}: {exc}", None)
            return
        except _Refused as exc:
            await self._refused(claimed, str(exc))
            return
        except _NotYetPosted:
            await self.db.run(lambda s: _release(s, claimed.id, delay=1.0))
            return
        except _NeverPosted as exc:
            reason = str(exc)
            await self.db.run(lambda s: _finish(s, claimed.id, state="failed", error=reason))
            return
        await self.db.run(lambda s: self._sent(s, claimed, result))

    def _claim(self, session: Session, row_id: int) -> OutboxRow | None:
        now = utcnow()
        claimed = session.execute(
            update(OutboxRow)
            .where(
                OutboxRow.id == row_id,
                or_(
                    OutboxRow.state == "pending",
                    (OutboxRow.state == "sending") & (OutboxRow.lease_until < now),
                ),
            )
            .values(state="sending", claimed_by=self.worker_id, lease_until=now + self.lease)
        )
        if not getattr(claimed, "rowcount", 0):
            return None
        # Read after claiming: a coalesced update may have replaced the payload just before.
        return session.get(OutboxRow, row_id, populate_existing=True)

    async def _call(self, row: OutboxRow) -> dict[str, Any]:
        if row.method == "response_url":
            return await self._post_response_url(row)
        payload = dict(row.payload)
        payload["channel"] = row.channel
        if row.method == "chat.update":
            assert row.message_key is not None
            payload["channel"], payload["ts"] = await self._posted(row.message_key)
        if row.thread_key is not None:
            payload["thread_ts"] = (await self._posted(row.thread_key))[1]
        response = await self.client.api_call(row.method, json=payload)
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def _posted(self, message_key: str) -> tuple[str, str]:
        def lookup(session: Session) -> tuple[str, str] | str:
            message = session.get(SlackMessageRow, message_key)
            if message is not None:
                return message.channel, message.ts
            post = session.execute(
                select(OutboxRow.state).where(
                    OutboxRow.message_key == message_key, OutboxRow.method == "chat.postMessage"
                )
            ).scalar()
            return post or "missing"

        found = await self.db.run(lookup)
        if isinstance(found, tuple):
            return found
        if found in ("failed", "missing"):
            raise _NeverPosted(f"message {message_key!r} was never posted")
        raise _NotYetPosted(message_key)

    async def _post_response_url(self, row: OutboxRow) -> dict[str, Any]:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._http.post(row.payload["url"], json=row.payload["body"]) as response:
            body = await response.text()
            if response.status >= 500 or response.status == 429:
                raise aiohttp.ClientResponseError(
                    response.request_info, (), status=response.status, message=body[:200]
                )
            if response.status >= 400:
                raise _Refused(body.strip()[:80] or f"http_{response.status}")
            return {"ok": True}

    def _sent(self, session: Session, row: OutboxRow, result: dict[str, Any]) -> None:
        if row.method == "chat.postMessage" and row.message_key and "ts" in result:
            session.merge(
                SlackMessageRow(
                    message_key=row.message_key,
                    channel=result.get("channel", row.channel),
                    ts=result["ts"],
                )
            )
        _finish(session, row.id, state="sent", error=None)

    async def _failed(self, row: OutboxRow, exc: SlackApiError) -> None:
        response = exc.response
        status = getattr(response, "status_code", 200)
        data = response.data if isinstance(getattr(response, "data", None), dict) else {}
        error = str(data.get("error") or f"http_{status}")
        self.metrics.slack_api_errors.labels(row.method, error).inc()
        if status == 429:
            retry_after = float(response.headers.get("Retry-After", "1") or 1)
            if row.method in RATE_LIMITED:
                self._buckets[row.channel].blocked_until = time.monotonic() + retry_after
            await self._retry_later(row, error, retry_after, count_attempt=False)
        elif status >= 500 or error in TRANSIENT_ERRORS:
            await self._retry_later(row, error, None)
        else:
            await self._refused(row, error)

    async def _refused(self, row: OutboxRow, error: str) -> None:
        """A permanent refusal: record it, count it, never retry it."""
        if row.method == "response_url":
            self.metrics.slack_api_errors.labels(row.method, error).inc()
        log.error(
            "Slack refused a call; not retrying",
            extra={"method": row.method, "channel": row.channel, "error": error},
        )
        await self.db.run(lambda s: _finish(s, row.id, state="failed", error=error))

    async def _retry_later(
        self, row: OutboxRow, error: str, delay: float | None, *, count_attempt: bool = True
    ) -> None:
        attempts = row.attempts + (1 if count_attempt else 0)
        wait = delay if delay is not None else min(self.max_backoff, 0.5 * 2**attempts)
        log.warning(
            "Slack call failed; will retry",
            extra={"method": row.method, "error": error, "retry_in_s": wait},
        )

        def reschedule(session: Session) -> None:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id == row.id)
                .values(
                    state="pending",
                    attempts=attempts,
                    error=error,
                    not_before=utcnow() + timedelta(seconds=wait),
                    claimed_by=None,
                    lease_until=None,
                )
            )

        await self.db.run(reschedule)


class _NotYetPosted(Exception):
    """The message this call refers to has not been sent yet; try again shortly."""


class _NeverPosted(Exception):
    """The message this call refers to failed or never existed."""


class _Refused(Exception):
    """Slack refused a response_url post for good (used or expired URL)."""


def _finish(session: Session, row_id: int, *, state: str, error: str | None) -> None:
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row_id)
        .values(state=state, error=error, sent_at=utcnow(), lease_until=None)
    )


def _release(session: Session, row_id: int, *, delay: float = 0.0) -> None:
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id == row_id)
        .values(
            state="pending",
            claimed_by=None,
            lease_until=None,
            not_before=utcnow() + timedelta(seconds=delay),
        )
    )


def _backlog(session: Session) -> tuple[int, datetime | None]:
    """(rows not yet sent nor given up, when the oldest of them was enqueued)."""
    count, oldest = session.execute(
        select(func.count(), func.min(OutboxRow.created_at))
        .select_from(OutboxRow)
        .where(OutboxRow.state != "sent")
        .where(OutboxRow.state != "failed")
    ).one()
    return int(count), oldest
