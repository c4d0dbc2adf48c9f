"""Alert threads with the real Prometheus and Alertmanager (Debian's), end to end.

A Prometheus rule fires on a metric this test controls; Alertmanager (group_wait 1 s)
posts its webhook with a bearer token to the bot; the bot threads it in the owning
team's channel. The Silence button creates a real silence through Alertmanager's v2
API, and Alertmanager then reports the alert as suppressed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest

from app.bootstrap import PlatformBot, build_app
from app.settings import Settings
from sandbox.app.stack import SANDBOX_WORKSPACE, SIGNING_SECRET
from sandbox.standins.observability import (
    AlertmanagerServer,
    MetricTarget,
    ObservabilityUnavailable,
    PrometheusServer,
    free_port,
)
from sandbox.standins.slack_api import Message, SlackStandIn
from sandbox.standins.slack_client import SlackSender
from tests.conftest import SAMPLE_CONFIG

TOKEN = "real-am-token"
RULES = """
groups:
  - name: checkout
    rules:
      - alert: CheckoutErrors
        expr: checkout_errors > 0
        for: 0s
        labels: {severity: page, service: checkout, env: prod}
        annotations:
          summary: Checkout requests are failing
          runbook_url: https://runbooks.example.com/checkout#errors
"""
T = TypeVar("T")


@dataclass
class Running:
    slack: SlackStandIn
    bot: PlatformBot
    sender: SlackSender
    target: MetricTarget
    alertmanager: AlertmanagerServer


@pytest.fixture
async def running(database_url: str) -> AsyncIterator[Running]:
    """Alertmanager (posting to the bot's port), Prometheus, then the bot wired to both."""
    port = free_port()
    async with AsyncExitStack() as stack:
        target = MetricTarget()
        alertmanager = AlertmanagerServer(
            webhook_url=f"http://127.0.0.1:{port}/alerts/alertmanager", bearer_token=TOKEN
        )
        try:
            await stack.enter_async_context(target)
            await stack.enter_async_context(alertmanager)
            prometheus = PrometheusServer(
                rules_yaml=RULES, targets=[target.base_url], alertmanager_url=alertmanager.url
            )
            await stack.enter_async_context(prometheus)
        except ObservabilityUnavailable as exc:
            pytest.skip(str(exc))
        slack = SlackStandIn(SANDBOX_WORKSPACE)
        await stack.enter_async_context(slack)
        settings = Settings(
            slack_bot_token=SANDBOX_WORKSPACE.bot_token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.api_url,
            database_url=database_url,
            platform_config=SAMPLE_CONFIG,
            host="127.0.0.1",
            port=port,
            worker_id="real",
            alertmanager_webhook_token=TOKEN,
            alertmanager_url=alertmanager.url,
            prometheus_url=prometheus.url,
        )
        bot = build_app(settings, auto_upgrade=True)
        bot.alerts.groups.window = bot.alerts.groups.window / 10  # coalesce quickly in tests
        await bot.start()
        stack.push_async_callback(bot.stop)
        sender = SlackSender(
            events_url=f"http://127.0.0.1:{port}/slack/events",
            signing_secret=SIGNING_SECRET,
            workspace=SANDBOX_WORKSPACE,
            standin=slack,
        )
        stack.push_async_callback(sender.close)
        yield Running(slack, bot, sender, target, alertmanager)


async def test_a_rule_fires_threads_is_silenced_for_real_and_resolves(running: Running) -> None:
    slack, sender = running.slack, running.sender
    running.target.set("checkout_errors", 3, {"pod": "pod-1"})

    parent = await _eventually(lambda: _parent(slack), timeout=30)
    assert parent.text.startswith("[FIRING:1] CheckoutErrors")
    assert "Checkout requests are failing" in _shown(parent)
    assert "https://runbooks.example.com/checkout#errors" in _shown(parent)
    thread = await _eventually(lambda: slack.thread("C01PAYMENTS", parent.ts)[1:])
    assert "Firing" in thread[0].text and "pod=pod-1" in thread[0].text

    # Silence, through the modal, as alice of payments.
    await sender.block_actions(
        user="alice", action_id="alert.silence", channel="C01PAYMENTS", message_ts=parent.ts
    )
    view = await _eventually(
        lambda: [v for v in slack.views.values() if v.view.get("callback_id") == "alert.silence"]
    )
    response = await sender.view_submission(
        user="alice",
        view_id=view[0].id,
        values={
            "duration": {"duration": {"type": "static_select", "selected_option": {"value": "4h"}}},
            "comment": {"comment": "rolling out the fix"},
        },
    )
    assert response.status == 200 and "errors" not in response.body
    await _eventually(lambda: "Silenced until" in _shown(slack.message("C01PAYMENTS", parent.ts)))
    suppressed = await _poll_alertmanager(
        running, lambda found: found and found[0]["status"]["state"] == "suppressed"
    )
    silence_id = suppressed[0]["status"]["silencedBy"][0]
    silence = await _get(running, f"/api/v2/silence/{silence_id}")
    assert silence["createdBy"].startswith("U01ALICE")
    assert silence["comment"] == "rolling out the fix"
    assert {"name": "service", "value": "checkout", "isRegex": False, "isEqual": True} in silence[
        "matchers"
    ]

    # Show query: the rule's expression, run against Prometheus, in the thread.
    await sender.block_actions(
        user="alice", action_id="alert.query", channel="C01PAYMENTS", message_ts=parent.ts
    )
    answer = await _eventually(
        lambda: [m for m in slack.thread("C01PAYMENTS", parent.ts) if "*Query*" in m.text]
    )
    assert "`checkout_errors &gt; 0`" in answer[0].text and "= 3" in answer[0].text

    # Unsilence, then the condition clears: the thread resolves.
    await sender.block_actions(
        user="alice", action_id="alert.unsilence", channel="C01PAYMENTS", message_ts=parent.ts
    )
    await _eventually(
        lambda: "Silenced until" not in _shown(slack.message("C01PAYMENTS", parent.ts))
    )
    expired = await _get(running, f"/api/v2/silence/{silence_id}")
    assert expired["status"]["state"] == "expired"
    running.target.set("checkout_errors", 0, {"pod": "pod-1"})
    await _eventually(
        lambda: slack.message("C01PAYMENTS", parent.ts).text.startswith("[RESOLVED]"), timeout=30
    )
    await _eventually(
        lambda: any("All alerts" in m.text for m in slack.thread("C01PAYMENTS", parent.ts))
    )
    assert len([m for m in slack.messages["C01PAYMENTS"] if m.thread_ts is None]) == 1


def _parent(slack: SlackStandIn) -> Message | None:
    found = [
        m
        for m in slack.messages.get("C01PAYMENTS", [])
        if m.thread_ts is None and "CheckoutErrors" in m.text
    ]
    return found[0] if found else None


def _shown(message: Message) -> str:
    return json.dumps(message.blocks)


async def _eventually(check: Callable[[], T | None], *, timeout: float = 10.0) -> T:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("what the test waited for did not happen in time")
        await asyncio.sleep(0.1)


async def _get(running: Running, path: str) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(running.alertmanager.url.rstrip("/") + path) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def _poll_alertmanager(
    running: Running, check: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    for _ in range(100):
        found = await _get(running, '/api/v2/alerts?filter=alertname="CheckoutErrors"')
        if check(found):
            return list(found)
        await asyncio.sleep(0.1)
    raise AssertionError(f"Alertmanager never showed the alert as expected: {found}")
