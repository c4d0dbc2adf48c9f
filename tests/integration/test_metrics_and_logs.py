"""What an operator scrapes and greps: /metrics (ours, the process's and Python's, a Run
duration histogram, the outbox's lag) and log lines that carry their request or Run id.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from engine.db import Database, OutboxRow, utcnow
from engine.deliverer import Deliverer
from engine.logs import JsonFormatter
from engine.metrics import Metrics
from engine.migrate import upgrade
from engine.outbox import Outbox
from sandbox.app.stack import GITLAB_WEBHOOK_TOKEN, SandboxStack, sandbox_stack
from tests.harness import Chat, eventually
from tests.unit.fakes import REPO_ROOT

DOCUMENTED_IN = ("README.md", "docs/operations.md")


Logged = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def logged() -> Iterator[Logged]:
    """`logged()`: every JSON line logged at INFO and above so far in the test, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, rollout_seconds=0.1) as running:
        yield running


def base_url(stack: SandboxStack) -> str:
    return stack.sender.events_url.removesuffix("/slack/events")


async def scrape(stack: SandboxStack) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url(stack)}/metrics") as response,
    ):
        assert response.status == 200
        return await response.text()


def finished(logged: Logged, state: str) -> dict[str, Any] | None:
    """The first "run finished" line with `state`, if logged yet."""
    return next(
        (e for e in logged() if e["message"] == "run finished" and e["state"] == state), None
    )


async def test_a_deploy_is_timed_by_action_and_outcome_and_its_lines_carry_its_ids(
    stack: SandboxStack, logged: Logged
) -> None:
    seen = await Chat(stack).say("/platform deploy checkout staging 1.4.3", as_user="alice")
    assert seen.text.startswith("*Queued*")

    done = await eventually(lambda: finished(logged, "succeeded"), timeout=15)
    text = await scrape(stack)

    assert re.search(
        r'^platform_bot_run_duration_seconds_count\{action="deploy",outcome="succeeded"\} 1\.0$',
        text,
        re.M,
    )
    assert 'platform_bot_run_duration_seconds_bucket{action="deploy",le="+Inf",outcome=' in text
    run_id, request = done["run_id"], done["request_id"]
    assert run_id and request
    lines = logged()
    cluster_lines = [e for e in lines if e["logger"] == "adapters.kubernetes"]
    assert cluster_lines, "the deploy logged nothing from the Kubernetes adapter"
    for entry in cluster_lines:
        assert (entry.get("run_id"), entry.get("request_id")) == (run_id, request), entry
    for entry in lines:
        if entry["message"] in ("step started", "run finished"):
            assert entry["run_id"] == run_id


async def test_metrics_include_the_process_and_python_collectors_and_the_outbox_lag(
    stack: SandboxStack,
) -> None:
    text = await scrape(stack)

    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
        "python_gc_objects_collected_total",
        "platform_bot_outbox_lag_seconds",
        "platform_bot_outbox_depth",
    ):
        assert re.search(rf"^{name}(\{{.*\}})? ", text, re.M), name


async def test_every_http_request_gets_an_id_that_its_log_lines_carry(
    stack: SandboxStack, logged: Logged
) -> None:
    body = {"object_kind": "push"}  # not a pipeline event: the webhook logs why it ignores it
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{base_url(stack)}/webhooks/gitlab",
            json=body,
            headers={"X-Gitlab-Token": GITLAB_WEBHOOK_TOKEN, "X-Gitlab-Event": "Push Hook"},
        ) as response,
        session.get(f"{base_url(stack)}/healthz") as health,
    ):
        rid = response.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{12}", rid)
        assert health.headers["X-Request-Id"] not in ("", rid)

    ignored = [e for e in logged() if e["message"] == "gitlab webhook ignored"]
    assert ignored and all(e["request_id"] == rid for e in ignored)


async def test_socket_mode_deliveries_get_a_request_id_too(
    database_url: str, logged: Logged
) -> None:
    async with sandbox_stack(
        database_url=database_url, socket_mode=True, rollout_seconds=0.1
    ) as stack:
        await stack.sender.slash_command(
            "deploy checkout staging 1.4.3", user="alice", channel="#payments"
        )
        done = await eventually(lambda: finished(logged, "succeeded"), timeout=15)

    assert re.fullmatch(r"[0-9a-f]{12}", done["request_id"])


async def test_outbox_lag_is_the_age_of_the_oldest_message_waiting(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    upgrade(db.engine)
    metrics = Metrics()
    client = AsyncWebClient(token="xoxb-unused", base_url="http://127.0.0.1:9/")
    deliverer = Deliverer(db, Outbox(db), client, metrics, worker_id="t")
    later = utcnow() + timedelta(hours=1)  # not due, so nothing is sent during the test

    def enqueue(session: Any) -> None:
        for age in (30, 300):
            session.add(
                OutboxRow(
                    channel="C1",
                    method="chat.postMessage",
                    payload={"text": "hi"},
                    created_at=utcnow() - timedelta(seconds=age),
                    not_before=later,
                )
            )

    try:
        await deliverer.deliver_due()
        assert metrics.outbox_lag._value.get() == 0.0  # empty: no lag
        await db.run(enqueue)
        await deliverer.deliver_due()
        assert 300 <= metrics.outbox_lag._value.get() < 360
        assert metrics.outbox_depth._value.get() == 2
    finally:
        await deliverer.close()
        db.dispose()
        await asyncio.sleep(0)


def test_every_metric_is_documented_for_operators() -> None:
    names = {
        metric.name
        for metric in Metrics().registry.collect()
        if metric.name.startswith("platform_bot_")
    }
    for document in DOCUMENTED_IN:
        text = (REPO_ROOT / document).read_text(encoding="utf-8")
        missing = sorted(name for name in names if name not in text)
        assert not missing, f"{document} does not describe {', '.join(missing)}"
