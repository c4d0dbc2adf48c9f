"""The outbox and its deliverer against the Slack stand-in, on SQLite and PostgreSQL.

The bot's real slack_sdk client talks HTTP to `sandbox.standins.slack_api.SlackStandIn`, which
answers as Slack does (429 + Retry-After past its per-channel rate, channel_not_found,
...). Unless a test is about Slack's real figure of one message a second per channel,
both the stand-in and the deliverer run at FAST_RATE messages a second, so the file
stays quick; `test_rate_limit_keeps_under_slacks_one_per_second` uses the real 1/s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import Database, OutboxRow, SlackMessageRow, utcnow
from engine.deliverer import Deliverer
from engine.messenger import OutboxMessenger
from engine.metrics import Metrics
from engine.migrate import upgrade
from engine.outbox import Outbox
from sandbox.app.stack import SANDBOX_WORKSPACE
from sandbox.standins.slack_api import RecordedCall, SlackStandIn

FAST_RATE = 10.0
"""Messages a second per channel for tests that are not about Slack's 1/s."""
PAYMENTS, SEARCH, PLATFORM = "C01PAYMENTS", "C02SEARCH", "C03PLATFORM"
ALICE = "U01ALICE"


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    """The stand-in at FAST_RATE per channel (burst 3, as Slack's)."""
    standin = SlackStandIn(SANDBOX_WORKSPACE, channel_rate_per_s=FAST_RATE, channel_burst=3)
    await standin.start()
    try:
        yield standin
    finally:
        await standin.stop()


@pytest.fixture
def outbox(db: Database) -> Outbox:
    return Outbox(db)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@asynccontextmanager
async def delivering(
    db: Database,
    outbox: Outbox,
    slack: SlackStandIn,
    metrics: Metrics | None = None,
    *,
    worker_id: str = "t",
    rate_per_channel: float = FAST_RATE,
    **options: Any,
) -> AsyncIterator[Deliverer]:
    """A Deliverer running in the background until the block ends."""
    client = AsyncWebClient(token=SANDBOX_WORKSPACE.bot_token, base_url=slack.api_url)
    deliverer = Deliverer(
        db,
        outbox,
        client,
        metrics or Metrics(),
        worker_id=worker_id,
        rate_per_channel=rate_per_channel,
        poll_interval=0.05,
        **options,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop))
    try:
        yield deliverer
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def enqueue(outbox: Outbox, write: Callable[[Session, Outbox], None]) -> None:
    await outbox.submit(write)


async def rows(db: Database) -> list[OutboxRow]:
    return await db.run(lambda s: list(s.scalars(select(OutboxRow).order_by(OutboxRow.id))))


async def settled(db: Database, timeout: float = 10.0) -> list[OutboxRow]:  # noqa: ASYNC109
    """Every outbox row once none is pending or being sent (the database cannot be
    awaited, so this polls it briefly)."""
    async with asyncio.timeout(timeout):
        while True:
            current = await rows(db)
            if current and all(row.state in ("sent", "failed") for row in current):
                return current
            await asyncio.sleep(0.02)


def posts_to(slack: SlackStandIn, channel: str) -> list[RecordedCall]:
    return [c for c in slack.calls_to("chat.postMessage") if c.args.get("channel") == channel]


def texts(slack: SlackStandIn, channel: str) -> list[str]:
    return [message.text for message in slack.messages.get(channel, [])]


def errors(metrics: Metrics, method: str, error: str) -> float:
    value = metrics.registry.get_sample_value(
        "platform_bot_slack_api_errors_total", {"method": method, "error": error}
    )
    return value or 0.0


async def test_posts_arrive_in_order_per_channel(
    db: Database, outbox: Outbox, slack: SlackStandIn
) -> None:
    for i in range(5):
        await enqueue(outbox, lambda s, o, i=i: o.enqueue_post(s, PAYMENTS, text=f"payments {i}"))
        await enqueue(outbox, lambda s, o, i=i: o.enqueue_post(s, SEARCH, text=f"search {i}"))

    async with delivering(db, outbox, slack):
        delivered = await settled(db)

    assert texts(slack, PAYMENTS) == [f"payments {i}" for i in range(5)]
    assert texts(slack, SEARCH) == [f"search {i}" for i in range(5)]
    assert {(row.state, row.error) for row in delivered} == {("sent", None)}
    assert all(row.sent_at is not None for row in delivered)


async def test_update_by_message_key_edits_the_message_in_place(
    db: Database, outbox: Outbox, slack: SlackStandIn
) -> None:
    async with delivering(db, outbox, slack):
        await enqueue(
            outbox, lambda s, o: o.enqueue_post(s, PAYMENTS, text="Deploying", message_key="d:1")
        )
        posted = await slack.wait_for("chat.postMessage")
        await settled(db)
        await enqueue(outbox, lambda s, o: o.enqueue_update(s, "d:1", text="Deployed"))
        await slack.wait_for("chat.update")
        await settled(db)

    [message] = slack.messages[PAYMENTS]
    assert (message.ts, message.text, message.edits) == (posted.response["ts"], "Deployed", 1)
    landed = await db.run(lambda s: s.get_one(SlackMessageRow, "d:1"))
    assert (landed.channel, landed.ts) == (PAYMENTS, message.ts)


async def test_updates_waiting_together_are_coalesced_into_the_newest(
    db: Database, outbox: Outbox, slack: SlackStandIn
) -> None:
    def post_and_three_updates(session: Session, o: Outbox) -> None:
        o.enqueue_post(session, PAYMENTS, text="step 0 of 3", message_key="run:1")
        for step in (1, 2, 3):
            o.enqueue_update(session, "run:1", text=f"step {step} of 3")

    await enqueue(outbox, post_and_three_updates)
    assert [row.method for row in await rows(db)] == ["chat.postMessage", "chat.update"]

    async with delivering(db, outbox, slack):
        await settled(db)

    [update] = slack.calls_to("chat.update")
    assert update.args["text"] == "step 3 of 3"
    [message] = slack.messages[PAYMENTS]
    assert (message.text, message.edits) == ("step 3 of 3", 1)


async def test_thread_reply_lands_in_the_parents_thread(
    db: Database, outbox: Outbox, slack: SlackStandIn
) -> None:
    def alert_and_replies(session: Session, o: Outbox) -> None:
        o.enqueue_post(session, PAYMENTS, text="alert: HighErrorRate", message_key="alert:1")
        o.enqueue_post(session, PAYMENTS, text="still firing", thread_key="alert:1")
        o.enqueue_post(session, PAYMENTS, text="resolved", thread_key="alert:1")

    await enqueue(outbox, alert_and_replies)
    async with delivering(db, outbox, slack):
        await settled(db)

    parent = slack.messages[PAYMENTS][0]
    thread = slack.thread(PAYMENTS, parent.ts)
    assert [(m.text, m.thread_ts) for m in thread] == [
        ("alert: HighErrorRate", None),
        ("still firing", parent.ts),
        ("resolved", parent.ts),
    ]


async def test_429_is_retried_after_retry_after_not_dropped(
    db: Database, outbox: Outbox, slack: SlackStandIn, metrics: Metrics
) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    await enqueue(outbox, lambda s, o: o.enqueue_post(s, PAYMENTS, text="first"))
    await enqueue(outbox, lambda s, o: o.enqueue_post(s, PAYMENTS, text="second"))

    async with delivering(db, outbox, slack, metrics):
        delivered = await settled(db)

    calls = posts_to(slack, PAYMENTS)
    assert [(c.status, c.args["text"]) for c in calls] == [
        (429, "first"),
        (200, "first"),
        (200, "second"),
    ]
    assert calls[1].at - calls[0].at >= 0.98  # Retry-After: 1, give or take clock rounding
    assert texts(slack, PAYMENTS) == ["first", "second"]
    assert [(r.state, r.attempts) for r in delivered] == [("sent", 0), ("sent", 0)]
    assert errors(metrics, "chat.postMessage", "ratelimited") == 1


async def test_server_error_is_retried_with_backoff(
    db: Database, outbox: Outbox, slack: SlackStandIn
) -> None:
    slack.fail_next("chat.postMessage", status=500, times=2)
    await enqueue(outbox, lambda s, o: o.enqueue_post(s, PAYMENTS, text="eventually"))

    # backoff is 0.5 s * 2**attempts: 1 s, then 2 s, capped here at 1.2 s
    async with delivering(db, outbox, slack, max_backoff=1.2):
        [row] = await settled(db)

    calls = posts_to(slack, PAYMENTS)
    assert [c.status for c in calls] == [500, 500, 200]
    assert calls[1].at - calls[0].at >= 0.98
    assert 1.18 <= calls[2].at - calls[1].at < 1.9  # grew, and was capped
    assert (row.state, row.attempts, row.error) == ("sent", 2, None)
    assert texts(slack, PAYMENTS) == ["eventually"]


SERVER_ERROR_COUNTED_TWICE = (
    "engine/deliverer.py Deliverer._failed increments slack_api_errors for a transient Slack "
    "error (HTTP 5xx, internal_error, ...) and then calls _retry_later(count_attempt=True), "
    "which increments it again"
)


async def test_each_server_error_is_counted_once(
    db: Database, outbox: Outbox, slack: SlackStandIn, metrics: Metrics
) -> None:
    slack.fail_next("chat.postMessage", status=500)
    await enqueue(outbox, lambda s, o: o.enqueue_post(s, PAYMENTS, text="eventually"))

    async with delivering(db, outbox, slack, metrics, max_backoff=0.2):
        await settled(db)

    assert [c.status for c in posts_to(slack, PAYMENTS)] == [500, 200]
    assert errors(metrics, "chat.postMessage", "internal_error") == 1


async def test_permanent_error_is_recorded_and_others_still_delivered(
    db: Database, outbox: Outbox, slack: SlackStandIn, metrics: Metrics
) -> None:
    await enqueue(outbox, lambda s, o: o.enqueue_post(s, "C99NOWHERE", text="lost"))
    await enqueue(outbox, lambda s, o: o.enqueue_post(s, PAYMENTS, text="fine"))
    await enqueue(outbox, lambda s, o: o.enqueue_post(s, SEARCH, text="also fine"))

    async with delivering(db, outbox, slack, metrics):
        delivered = await settled(db)

    assert [(r.channel, r.state, r.error) for r in delivered] == [
        ("C99NOWHERE", "failed", "channel_not_found"),
        (PAYMENTS, "sent", None),
        (SEARCH, "sent", None),
    ]
    assert len(posts_to(slack, "C99NOWHERE")) == 1  # refused once, never retried
    assert errors(metrics, "chat.postMessage", "channel_not_found") == 1
    assert texts(slack, PAYMENTS) == ["fine"]
    assert texts(slack, SEARCH) == ["also fine"]


ONE_CHANNEL_STARVES_THE_OTHERS = (
    "engine/deliverer.py Deliverer._due_rows reads only the oldest 500 pending rows; when one "
    "channel has a backlog of more than 500 (an alert storm at 1/s), rows of every other "
    "channel are never looked at until that backlog drains"
)


async def test_a_backlog_in_one_channel_does_not_hold_up_the_others(
    tmp_path: Path, slack: SlackStandIn
) -> None:
    # Backend-independent logic, so SQLite only: the test waits out its deadline while
    # the bug is there.
    db = Database(f"sqlite:///{tmp_path / 'storm.db'}")
    upgrade(db.engine)
    outbox = Outbox(db)

    def storm(session: Session, o: Outbox) -> None:
        for i in range(600):
            o.enqueue_post(session, PAYMENTS, text=f"alert {i}")
        o.enqueue_post(session, SEARCH, text="approve my deploy?")

    try:
        await enqueue(outbox, storm)
        async with delivering(db, outbox, slack):
            await slack.wait_for(lambda call: call.args.get("channel") == SEARCH, timeout=1.0)
    finally:
        db.dispose()
    assert texts(slack, SEARCH) == ["approve my deploy?"]


async def test_rows_survive_a_restart(
    db: Database, outbox: Outbox, slack: SlackStandIn, database_url: str
) -> None:
    async with delivering(db, outbox, slack, worker_id="before"):
        await enqueue(
            outbox, lambda s, o: o.enqueue_post(s, PAYMENTS, text="v1", message_key="status")
        )
        await settled(db)

    # while no deliverer runs: new rows, and one a crashed deliverer left half-sent
    await enqueue(outbox, lambda s, o: o.enqueue_update(s, "status", text="v2"))
    await enqueue(outbox, lambda s, o: o.enqueue_post(s, SEARCH, text="written while down"))

    def abandoned(session: Session) -> None:
        session.add(
            OutboxRow(
                channel=PLATFORM,
                method="chat.postMessage",
                payload={"text": "half-sent when we crashed"},
                state="sending",
                claimed_by="crashed",
                lease_until=utcnow() - timedelta(seconds=1),
            )
        )

    await db.run(abandoned)
    assert [r.state for r in await rows(db)] == ["sent", "pending", "pending", "sending"]

    restarted = Database(database_url)  # a new process: nothing shared but the database
    try:
        async with delivering(restarted, Outbox(restarted), slack, worker_id="after"):
            delivered = await settled(restarted)
    finally:
        restarted.dispose()

    assert [(r.state, r.claimed_by) for r in delivered] == [
        ("sent", "before"),
        ("sent", "after"),
        ("sent", "after"),
        ("sent", "after"),
    ]
    [status] = slack.messages[PAYMENTS]
    assert (status.text, status.edits) == ("v2", 1)
    assert texts(slack, SEARCH) == ["written while down"]
    assert texts(slack, PLATFORM) == ["half-sent when we crashed"]


async def test_rate_limit_keeps_under_slacks_one_per_second(db: Database, outbox: Outbox) -> None:
    # Slack's real figure: about one message a second per channel, short bursts allowed
    # (the stand-in's default: 1/s, burst 3). The deliverer runs with its defaults.
    burst = 2
    async with SlackStandIn(SANDBOX_WORKSPACE) as slack:
        for i in range(8):
            await enqueue(outbox, lambda s, o, i=i: o.enqueue_post(s, PAYMENTS, text=f"p{i}"))
            await enqueue(outbox, lambda s, o, i=i: o.enqueue_post(s, SEARCH, text=f"s{i}"))
        async with delivering(db, outbox, slack, rate_per_channel=1.0, burst=burst):
            delivered = await settled(db, timeout=20)

        assert {r.state for r in delivered} == {"sent"}
        assert slack.rate_limited_count == 0
        for channel, prefix in ((PAYMENTS, "p"), (SEARCH, "s")):
            assert texts(slack, channel) == [f"{prefix}{i}" for i in range(8)]
            times = [c.at for c in posts_to(slack, channel)]
            assert len(times) == 8
            busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
            assert busiest <= burst + 1, times
            assert times[-1] - times[0] >= 8 - burst - 0.3  # the bucket really held them back


async def test_response_url_rows_arrive_as_ephemerals(
    db: Database, outbox: Outbox, slack: SlackStandIn
) -> None:
    url = slack.new_response_url(channel=PAYMENTS, user=ALICE)
    await enqueue(outbox, lambda s, o: o.enqueue_response(s, PAYMENTS, url, text="Only you"))

    async with delivering(db, outbox, slack):
        [row] = await settled(db)

    assert (row.method, row.state) == ("response_url", "sent")
    assert [(e.channel, e.user, e.text, e.source) for e in slack.ephemerals] == [
        (PAYMENTS, ALICE, "Only you", "response_url")
    ]
    assert slack.messages.get(PAYMENTS, []) == []  # nobody else saw it


async def test_a_keyed_post_made_twice_is_one_message_updated(
    db: Database, outbox: Outbox, slack: SlackStandIn
) -> None:
    """A step that posts (an announcement) and is run again after a crash must not post
    twice: the Messenger turns the second post of one key into an update."""
    messenger = OutboxMessenger(outbox)
    await messenger.post(PAYMENTS, text="first", key="announce:run-1")
    await messenger.post(PAYMENTS, text="again", key="announce:run-1")
    await messenger.post(PAYMENTS, text="unkeyed")
    await messenger.post(PAYMENTS, text="unkeyed")

    async with delivering(db, outbox, slack):
        await settled(db)

    assert texts(slack, PAYMENTS) == ["again", "unkeyed", "unkeyed"]
    assert len(posts_to(slack, PAYMENTS)) == 3
