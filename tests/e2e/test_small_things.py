"""The small things a user saw (issue 10, item 11) that were still there: who rejected a
request is shown as a mention on the cancelled Run, never as a raw user id."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.e2e.test_approvals import BumpExecutor, ask, card, run_state
from tests.harness import eventually

PAYMENTS = "C01PAYMENTS"


# a whole stack and several clicks: slow on a busy machine
pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def bump() -> BumpExecutor:
    return BumpExecutor()


@pytest.fixture
async def stack(database_url: str, bump: BumpExecutor) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, executors=[bump], seed=False) as running:
        yield running


async def test_a_rejected_runs_message_names_who_rejected_it_as_a_mention(
    stack: SandboxStack,
) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    await stack.sender.block_actions(
        user="bob", action_id="approval.reject", channel=PAYMENTS, message_ts=request.ts
    )
    await stack.slack.wait_for("views.open")
    (view_id,) = [v.id for v in stack.slack.views.values() if v.user == "U02BOB"]
    await stack.sender.view_submission(
        user="bob", view_id=view_id, values={"reason": {"value": "not during <!here> peak"}}
    )
    await run_state(stack, proposal.run_id, "cancelled")

    cancelled = await eventually(
        lambda: [
            m for m in stack.slack.messages.get(PAYMENTS, []) if m.text.startswith("*Cancelled*")
        ]
    )
    shown = json.dumps(cancelled[0].blocks)
    assert "Cancelled by <@U02BOB>: rejected: not during &lt;!here&gt; peak" in shown
    assert "by U02BOB" not in shown and "<!here>" not in shown


async def test_an_expired_runs_message_names_nobody(stack: SandboxStack) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    desk = stack.bot.approvals.desk
    await stack.bot.db.run(lambda s: desk._expire(s, approval_id=proposal.approval_id or ""))
    await run_state(stack, proposal.run_id, "cancelled")
    cancelled = await eventually(
        lambda: [
            m for m in stack.slack.messages.get(PAYMENTS, []) if m.text.startswith("*Cancelled*")
        ]
    )
    shown = json.dumps(cancelled[0].blocks)
    assert "approval expired: expired" in shown
    assert "Cancelled by" not in shown and "platform-bot>" not in shown
