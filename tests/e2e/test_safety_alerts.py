"""The Alertmanager webhook's safety rules, asserted on what is stored and posted (issue
10, "Tests that catch the bugs that matter"; mutants in tests/mutants/)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from features.alerts.tables import AlertGroupRow, AlertNotificationRow
from features.kit.webhooks import same_secret
from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.e2e.test_alerts import CHECKOUT, alert, notification, parents, post, replies
from tests.harness import eventually

# a whole stack and several clicks: slow on a busy machine
pytestmark = pytest.mark.timeout(150)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url) as running:
        running.bot.alerts.groups.window = timedelta(seconds=0.1)
        yield running


async def stored(stack: SandboxStack) -> int:
    rows = await stack.bot.db.run(lambda s: s.execute(select(AlertNotificationRow.id)).all())
    return len(rows)


async def test_an_empty_bearer_token_is_refused(stack: SandboxStack) -> None:
    body = notification([alert("a1", labels=CHECKOUT)])
    status, _ = await post(stack, body, token="")  # "Authorization: Bearer "
    assert status == 401
    status, _ = await post(stack, body, token=" ")
    assert status == 401

    # a token configured as empty (ALERTMANAGER_WEBHOOK_TOKEN="") is no token: an empty
    # bearer token must not match it
    stack.bot.alerts.receiver.token = ""
    status, _ = await post(stack, body, token="")
    assert status == 503

    await asyncio.sleep(0.3)
    assert await stored(stack) == 0
    assert parents(stack, "C01PAYMENTS") == []


def test_an_empty_secret_never_matches() -> None:
    assert same_secret("", "") is False
    assert same_secret("", "s3cret") is False
    assert same_secret("s3cret", "s3cret") is True
    assert same_secret("s3cre", "s3cret") is False


async def test_ha_peers_with_different_external_urls_make_one_thread(
    stack: SandboxStack,
) -> None:
    """Each Alertmanager of an HA pair has its own `--web.external-url`; they send the
    same group (same groupKey), which is one thread."""
    a = alert("a1", labels={**CHECKOUT, "instance": "pod-1"})
    peers = [
        {**notification([a]), "externalURL": f"http://alertmanager-{i}.monitoring:9093"}
        for i in range(2)
    ]
    statuses = await asyncio.gather(*(post(stack, body) for body in peers))
    assert [s for s, _ in statuses] == [200, 200]
    parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]
    await eventually(lambda: replies(stack, "C01PAYMENTS", parent))
    resolved = {**a, "status": "resolved", "endsAt": "2026-11-27T08:05:00Z"}
    await post(
        stack, {**notification([resolved]), "externalURL": "http://alertmanager-1.monitoring:9093"}
    )
    await eventually(
        lambda: stack.slack.message("C01PAYMENTS", parent.ts).text.startswith("[RESOLVED]")
    )
    await asyncio.sleep(0.5)
    assert len(parents(stack, "C01PAYMENTS")) == 1
    groups = await stack.bot.db.run(lambda s: s.execute(select(AlertGroupRow.id)).all())
    assert len(groups) == 1
