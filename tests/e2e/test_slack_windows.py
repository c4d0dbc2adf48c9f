"""Slack's 3-second windows, met with Slack as slow as the real one (150 ms a call).

The CI-affordable subset of "the e2e suite runs with 150 ms Slack latency" (marker
`slack_latency`): a command, a modal opened from a command (its trigger_id lives 3 s), an
approval click, an alert's Ack and the Silence form, each driven as Slack drives it and
each answered well inside 3 s, its follow-up arriving too. The whole e2e suite runs the
same way with `SANDBOX_SLACK_LATENCY_MS=150 .venv/bin/python -m pytest tests/e2e`; every
e2e test then also fails on any late ack (tests/e2e/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from sandbox.app.stack import SandboxStack, sandbox_stack
from sandbox.standins.slack_client import ACK_DEADLINE_S
from tests.e2e.test_alerts import CHECKOUT, alert, notification, parents, post, shown
from tests.e2e.test_approvals import BumpExecutor, ask, card, card_saying, click, run_state
from tests.harness import Chat, eventually

pytestmark = pytest.mark.slack_latency

LATENCY_MS = 150


@pytest.fixture
def bump() -> BumpExecutor:
    return BumpExecutor()


@pytest.fixture
async def stack(
    database_url: str, bump: BumpExecutor, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SandboxStack]:
    monkeypatch.setenv("SANDBOX_SLACK_LATENCY_MS", str(LATENCY_MS))
    async with sandbox_stack(database_url=database_url, executors=[bump]) as running:
        running.bot.alerts.groups.window = timedelta(seconds=0.1)
        assert running.slack.latency_s == pytest.approx(LATENCY_MS / 1000)
        yield running


def slowest(stack: SandboxStack, since: int) -> float:
    acks = stack.sender.acks[since:]
    assert acks, "the bot was sent nothing"
    return max(ack.seconds for ack in acks)


async def test_a_command_is_acked_in_time(stack: SandboxStack) -> None:
    mark = len(stack.sender.acks)
    seen = await Chat(stack).say("/platform status checkout")
    assert "checkout" in seen.text
    assert slowest(stack, mark) < ACK_DEADLINE_S


async def test_a_modal_opens_before_its_trigger_id_expires(stack: SandboxStack) -> None:
    mark = len(stack.sender.acks)
    await stack.sender.slash_command(text="new-service", user="alice", channel="C01PAYMENTS")
    await stack.slack.wait_for("views.open", timeout=5)
    opened = stack.slack.calls_to("views.open")[-1]
    assert opened.ok, opened.response  # not expired_trigger_id
    assert slowest(stack, mark) < ACK_DEADLINE_S


async def test_an_approval_click_is_acked_in_time(stack: SandboxStack, bump: BumpExecutor) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    mark = len(stack.sender.acks)
    assert "that was the last approval" in await click(stack, "bob", request)
    assert slowest(stack, mark) < ACK_DEADLINE_S
    await run_state(stack, proposal.run_id, "succeeded")
    await card_saying(stack, request, ":white_check_mark: *Approved*")
    assert bump.executed == [proposal.run_id]


async def test_an_alert_ack_and_the_silence_form_are_answered_in_time(
    stack: SandboxStack,
) -> None:
    await post(stack, notification([alert("a1", labels=CHECKOUT)]))
    parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]
    mark = len(stack.sender.acks)
    await stack.sender.block_actions(
        user="alice", action_id="alert.ack", channel="C01PAYMENTS", message_ts=parent.ts
    )
    await eventually(
        lambda: "*Acked by* <@U01ALICE>" in shown(stack.slack.message("C01PAYMENTS", parent.ts))
    )
    await stack.sender.block_actions(
        user="alice", action_id="alert.silence", channel="C01PAYMENTS", message_ts=parent.ts
    )
    views = await eventually(
        lambda: [v for v in stack.slack.views.values() if v.view["callback_id"] == "alert.silence"]
    )
    choice = {"type": "static_select", "selected_option": {"value": "1h"}}
    response = await stack.sender.view_submission(
        user="alice", view_id=views[0].id, values={"duration": {"duration": choice}}
    )
    assert response.status == 200
    # No Alertmanager in this stack: the form says so on the form, in time.
    assert response.json() == {
        "response_action": "errors",
        "errors": {"duration": "Alertmanager is not configured on this bot (ALERTMANAGER_URL)."},
    }
    assert slowest(stack, mark) < ACK_DEADLINE_S
