"""Nothing inside Slack's 3-second windows waits on Alertmanager: the Silence form is
answered at once, the silence is created after, and the thread says what came of it.

Alertmanager here is a small HTTP server that takes 4 s to answer `POST /api/v2/silences`
(or refuses it), so a form that waited for it would miss Slack's deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.e2e.test_alerts import CHECKOUT, alert, notification, parents, post, replies, shown
from tests.harness import eventually

SLOW_SECONDS = 4.0


@dataclass
class SlowAlertmanager:
    """Answers silences after `delay` seconds, with `status` (200: a new silence id)."""

    delay: float = SLOW_SECONDS
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def silences(self, request: web.Request) -> web.Response:
        self.received.append(json.loads(await request.text()))
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response("Failed to create silence: bad matchers", status=self.status)
        return web.json_response({"silenceID": f"silence-{len(self.received)}"})


@pytest.fixture
async def alertmanager() -> AsyncIterator[SlowAlertmanager]:
    fake = SlowAlertmanager()
    app = web.Application()
    app.router.add_post("/api/v2/silences", fake.silences)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.url = f"http://{host}:{port}/"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def stack(database_url: str, alertmanager: SlowAlertmanager) -> AsyncIterator[SandboxStack]:
    overrides = {"alertmanager_url": alertmanager.url}
    async with sandbox_stack(database_url=database_url, settings_overrides=overrides) as running:
        running.bot.alerts.groups.window = timedelta(seconds=0.1)
        yield running


async def submit_silence(stack: SandboxStack, comment: str) -> tuple[float, Any]:
    await post(stack, notification([alert("a1", labels=CHECKOUT)]))
    parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]
    await stack.sender.block_actions(
        user="alice", action_id="alert.silence", channel="C01PAYMENTS", message_ts=parent.ts
    )
    views = await eventually(
        lambda: [v for v in stack.slack.views.values() if v.view["callback_id"] == "alert.silence"]
    )
    choice = {"type": "static_select", "selected_option": {"value": "4h"}}
    started = time.perf_counter()
    response = await stack.sender.view_submission(
        user="alice",
        view_id=views[0].id,
        values={
            "duration": {"duration": choice},
            "comment": {"comment": comment},
        },
    )
    answered_in = time.perf_counter() - started
    assert response.status == 200
    assert response.json() is None  # an empty answer: Slack closes the form
    return answered_in, parent


async def test_the_silence_form_answers_before_alertmanager_does(
    stack: SandboxStack, alertmanager: SlowAlertmanager
) -> None:
    answered_in, parent = await submit_silence(stack, "rolling out the fix")
    assert answered_in < 1.0, f"the form was answered after {answered_in:.2f} s"
    assert alertmanager.received == [] or len(alertmanager.received) == 1

    said = await eventually(
        lambda: [r for r in replies(stack, "C01PAYMENTS", parent) if ":mute:" in r.text],
        timeout=SLOW_SECONDS + 8,
    )
    assert "<@U01ALICE> silenced this group until" in said[0].text
    assert "rolling out the fix" in said[0].text
    (body,) = alertmanager.received
    assert body["comment"] == "rolling out the fix"
    assert {"name": "service", "value": "checkout", "isRegex": False, "isEqual": True} in body[
        "matchers"
    ]
    await eventually(
        lambda: "Silenced until" in shown(stack.slack.message("C01PAYMENTS", parent.ts)),
        timeout=5,
    )


async def test_a_refused_silence_is_said_in_the_thread(
    stack: SandboxStack, alertmanager: SlowAlertmanager
) -> None:
    alertmanager.delay, alertmanager.status = 0.0, 400
    answered_in, parent = await submit_silence(stack, "x")
    assert answered_in < 1.0
    said = await eventually(
        lambda: [r for r in replies(stack, "C01PAYMENTS", parent) if ":warning:" in r.text],
        timeout=8,
    )
    assert "<@U01ALICE>, the silence was not created" in said[0].text
    assert "Press Silence again" in said[0].text
