"""The one way anything reaches Slack: a durable outbox (engine.deliverer sends it).

Everything the bot says is first a row in `slack_outbox`, so a restart loses nothing.
The deliverer sends rows in order per channel, at most `rate` messages a second per
channel with a small burst (Slack's documented limit for posting is about one a second
per channel), honours 429 Retry-After, retries transient failures with backoff for as
long as it takes, and records permanent failures (a bad channel, invalid blocks)
instead of retrying them forever. Updates of one message that have not been sent yet
are coalesced into one: only the newest content matters.

Several replicas may deliver from one database: a row is claimed with a conditional
UPDATE and a lease, so it is sent once. Rate buckets are per process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from engine.db import Database, OutboxRow
from kernel.blocks import message_text

log = logging.getLogger(__name__)

TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
"""Slack errors worth retrying; every other `ok: false` error is permanent."""

RATE_LIMITED = frozenset({"chat.postMessage", "chat.update"})
"""Calls that count against a channel's message rate; ephemeral replies do not."""


def lane(row: OutboxRow) -> str:
    """Rows in one lane go out one at a time, in order: a channel's messages share one."""
    return row.channel if row.method in RATE_LIMITED else f"{row.method}:{row.id}"


class Outbox:
    """Writes Slack calls into the outbox; `enqueue_*` take the caller's session. Every
    `text` is cut safely to Slack's 40,000 characters (kernel.blocks.message_text).

    Taking the caller's session lets a state change and the message announcing it
    commit together or not at all.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.wakeup = asyncio.Event()

    def enqueue_post(
        self,
        session: Session,
        channel: str,
        *,
        text: str,
        blocks: Sequence[dict[str, Any]] = (),
        message_key: str | None = None,
        thread_key: str | None = None,
        thread_ts: str | None = None,
    ) -> None:
        """chat.postMessage; `message_key` names it for later updates and replies.

        A reply goes in the thread of our message `thread_key`, or of any message `thread_ts`.
        """
        payload: dict[str, Any] = {
            "text": message_text(text),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if blocks:
            payload["blocks"] = list(blocks)
        if thread_ts:
            payload["thread_ts"] = thread_ts
        session.add(
            OutboxRow(
                channel=channel,
                method="chat.postMessage",
                payload=payload,
                message_key=message_key,
                thread_key=thread_key,
            )
        )

    def enqueue_update(
        self,
        session: Session,
        message_key: str,
        *,
        text: str,
        blocks: Sequence[dict[str, Any]] = (),
    ) -> None:
        """chat.update of a message we posted; replaces a not-yet-sent update of it."""
        payload: dict[str, Any] = {"text": message_text(text), "blocks": list(blocks)}
        replaced = session.execute(
            update(OutboxRow)
            .where(
                OutboxRow.message_key == message_key,
                OutboxRow.method == "chat.update",
                OutboxRow.state == "pending",
            )
            .values(payload=payload)
        )
        if getattr(replaced, "rowcount", 0):
            return
        post = session.execute(
            select(OutboxRow.channel).where(
                OutboxRow.message_key == message_key, OutboxRow.method == "chat.postMessage"
            )
        ).scalar()
        if post is None:
            raise LookupError(f"no message posted with key {message_key!r}")
        session.add(
            OutboxRow(channel=post, method="chat.update", payload=payload, message_key=message_key)
        )

    def enqueue_post_or_update(
        self,
        session: Session,
        channel: str,
        message_key: str,
        *,
        text: str,
        blocks: Sequence[dict[str, Any]] = (),
        thread_key: str | None = None,
    ) -> None:
        """Post the message the first time, update it afterwards (progress messages, and
        any keyed post a step may repeat after a crash)."""
        exists = session.execute(
            select(OutboxRow.id).where(
                OutboxRow.message_key == message_key, OutboxRow.method == "chat.postMessage"
            )
        ).first()
        if exists:
            self.enqueue_update(session, message_key, text=text, blocks=blocks)
        else:
            self.enqueue_post(
                session,
                channel,
                text=text,
                blocks=blocks,
                message_key=message_key,
                thread_key=thread_key,
            )

    def enqueue_ephemeral(
        self,
        session: Session,
        channel: str,
        user: str,
        *,
        text: str,
        blocks: Sequence[dict[str, Any]] = (),
    ) -> None:
        """chat.postEphemeral: seen only by `user`."""
        payload: dict[str, Any] = {"user": user, "text": message_text(text)}
        if blocks:
            payload["blocks"] = list(blocks)
        session.add(OutboxRow(channel=channel, method="chat.postEphemeral", payload=payload))

    def enqueue_response(
        self,
        session: Session,
        channel: str,
        response_url: str,
        *,
        text: str,
        blocks: Sequence[dict[str, Any]] = (),
        ephemeral: bool = True,
        replace_original: bool = False,
    ) -> None:
        """A reply through a command's or a click's response_url."""
        payload: dict[str, Any] = {
            "url": response_url,
            "body": {
                "response_type": "ephemeral" if ephemeral else "in_channel",
                "text": message_text(text),
                "replace_original": replace_original,
            },
        }
        if blocks:
            payload["body"]["blocks"] = list(blocks)
        session.add(OutboxRow(channel=channel, method="response_url", payload=payload))

    async def submit(self, write: Callable[[Session, Outbox], None]) -> None:
        """Run `write(session, outbox)` in a transaction and wake the deliverer."""
        await self.db.run(lambda session: write(session, self))
        self.notify()

    def notify(self) -> None:
        self.wakeup.set()
