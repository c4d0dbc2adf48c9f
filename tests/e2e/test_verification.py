"""Deploys that verify themselves, typed and clicked as in Slack, against the real
Prometheus (the sandbox's MetricTarget holds the gauge checkout is watched with).

Windows are four seconds here (the environments' `verification.window_seconds`), so each
test waits for real: data before the deploy, the window after it, the timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.db import AuditRow
from features.verification.messages import ROLL_BACK
from features.verification.tables import VerificationRow
from sandbox.app.stack import SandboxStack, observability_installed, sandbox_stack
from sandbox.standins.slack_api import Message
from tests.harness import Chat
from tests.verification_config import HEALTH_METRIC, verification_config

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not observability_installed(), reason="needs Prometheus (bootstrap)"),
]

PAYMENTS = "C01PAYMENTS"
WINDOW = 4


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SandboxStack]:
    config = verification_config(tmp_path, window_seconds=WINDOW, auto_rollback=("staging",))
    async with sandbox_stack(config=config, observability=True, rollout_seconds=0.1) as running:
        yield running


@pytest.fixture
def chat(stack: SandboxStack) -> Chat:
    return Chat(stack)


def errors(stack: SandboxStack, env: str, ratio: float) -> None:
    assert stack.metrics is not None
    stack.metrics.set(HEALTH_METRIC, ratio, {"service": "checkout", "env": env})


async def message(
    stack: SandboxStack, starts: str, *, containing: str = "", within: float = 30
) -> Message:
    async with asyncio.timeout(within):
        while True:
            for found in stack.slack.messages.get(PAYMENTS, []):
                if found.text.startswith(starts) and containing in str(found.blocks) + found.text:
                    return found
            await asyncio.sleep(0.1)


async def approve(stack: SandboxStack, summary: str) -> None:
    card = await message(stack, ":lock: *Approval needed*", containing=summary)
    await stack.sender.block_actions(
        user="bob", action_id="approval.approve", channel=PAYMENTS, message_ts=card.ts
    )


async def test_a_prod_deploy_whose_errors_rise_is_degraded_and_rolled_back_from_its_thread(
    stack: SandboxStack, chat: Chat
) -> None:
    errors(stack, "prod", 0.01)
    await asyncio.sleep(WINDOW + 1)  # Prometheus has the window before

    await chat.say("/platform deploy checkout prod 1.4.3", as_user="alice")
    await approve(stack, "deploy checkout 1.4.3 to prod")
    done = await message(stack, "*Done*: deploy checkout 1.4.3 to prod")
    errors(stack, "prod", 0.3)

    verdict = await message(stack, ":warning: *Degraded*: Deploy of `checkout` in `prod`")
    assert verdict.thread_ts == done.ts  # in the deploy's thread
    shown = str(verdict.blocks)
    assert "error ratio: 1.00% → " in shown
    assert "https://grafana.example.com/d/checkout-overview?from=" in shown
    button = verdict.blocks[-1]["elements"][0]
    assert button["action_id"] == ROLL_BACK

    await stack.sender.block_actions(
        user="alice", action_id=ROLL_BACK, channel=PAYMENTS, message_ts=verdict.ts
    )

    # the normal flow: prod's rollback waits for an SRE, in the same thread
    card = await message(stack, ":lock: *Approval needed*", containing="roll back checkout in prod")
    assert card.thread_ts == done.ts
    errors(stack, "prod", 0.01)
    await approve(stack, "roll back checkout in prod")
    await message(stack, "*Done*: roll back checkout in prod to revision 2")
    # the rollback is verified too: healthy again, and no button under it
    healthy = await message(stack, ":white_check_mark: *Healthy*: Rollback of `checkout`")
    assert "actions" not in [b["type"] for b in healthy.blocks]

    def verdicts() -> list[tuple[str, str]]:
        with stack.bot.db.session() as session:
            rows = session.execute(select(VerificationRow).order_by(VerificationRow.created_at))
            return [(r.kind, r.state) for r in rows.scalars()]

    assert verdicts() == [("deploy", "degraded"), ("rollback", "healthy")]


async def test_where_policy_says_auto_rollback_the_bot_rolls_back_by_itself(
    stack: SandboxStack, chat: Chat
) -> None:
    errors(stack, "staging", 0.01)
    await asyncio.sleep(WINDOW + 1)

    await chat.say("/platform deploy checkout staging 1.4.3", as_user="alice")
    await message(stack, "*Done*: deploy checkout 1.4.3 to staging")
    errors(stack, "staging", 0.5)

    verdict = await message(stack, ":warning: *Degraded*: Deploy of `checkout` in `staging`")
    shown = str(verdict.blocks)
    assert "Rolling back by myself" in shown
    assert "`auto_rollback: true`" in shown
    assert ROLL_BACK not in shown
    await message(stack, "*Done*: roll back checkout in staging to revision 2", within=30)

    with stack.bot.db.session() as session:
        decision = session.execute(
            select(AuditRow).where(AuditRow.event == "verification.auto_rollback")
        ).scalar_one()
    assert decision.actor == "platform-bot"
    assert decision.detail["decided_by"] == "environment policy auto_rollback: true"
    assert decision.detail["queries"][0]["after"] > 0.05
