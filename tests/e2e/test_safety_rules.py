"""The safety rules that a hand-made mutant once broke without any test noticing (issue 10,
"Tests that catch the bugs that matter"). Each test asserts what happens (votes, Runs,
request states, what reached Slack), not only the wording, so that a plausible bug in
the rule fails it. tests/mutants/ keeps those bugs as patches; scripts/mutants checks
they are still caught.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.db import RunRow
from features.approvals.request import OPEN
from features.approvals.tables import ApprovalRow, ApprovalVoteRow
from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.e2e.test_approvals import (
    BumpExecutor,
    ask,
    audit_events,
    card,
    click,
    config_with,
    run_state,
)

# a whole stack and several clicks: slow on a busy machine
pytestmark = pytest.mark.timeout(150)


@pytest.fixture
def bump() -> BumpExecutor:
    return BumpExecutor()


@pytest.fixture
async def stack(database_url: str, bump: BumpExecutor) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, executors=[bump], seed=False) as running:
        yield running


async def votes(stack: SandboxStack) -> list[tuple[str, str]]:
    rows = await stack.bot.db.run(
        lambda s: s.execute(select(ApprovalVoteRow.voter, ApprovalVoteRow.vote)).all()
    )
    return [(voter, vote) for voter, vote in rows]


async def approval_state(stack: SandboxStack, approval_id: str) -> str:
    return await stack.bot.db.run(lambda s: s.get_one(ApprovalRow, approval_id).state)


async def test_a_requester_who_is_also_an_eligible_approver_cannot_approve_it(
    database_url: str, tmp_path: Path, bump: BumpExecutor
) -> None:
    # bob (S02SRE) may approve prod changes, and asks for one himself; dave (S03PLATFORM)
    # is the other approver, so the request can be opened at all.
    config = config_with(
        tmp_path,
        "approvers: {teams: [sre], usergroups: [S02SRE]}",
        "approvers: {usergroups: [S02SRE, S03PLATFORM]}",
    )
    async with sandbox_stack(
        database_url=database_url, config=config, executors=[bump], seed=False
    ) as stack:
        proposal = await ask(stack, user="bob")
        assert proposal.approval_id
        request = await card(stack, proposal.approval_id)

        told = await click(stack, "bob", request)

        assert told.startswith("You asked for this change, so you cannot vote on it")
        assert await votes(stack) == []
        assert await approval_state(stack, proposal.approval_id) == OPEN
        await asyncio.sleep(0.3)
        assert bump.executed == []
        assert ("U02BOB", "approval.refused", "own_request") in await audit_events(stack)

        told = await click(stack, "bob", request, "approval.reject")  # not by rejecting either
        assert told.startswith("You asked for this change")
        assert await votes(stack) == []
        assert stack.slack.views == {}

        await click(stack, "dave", request)  # someone else: four eyes
        await run_state(stack, proposal.run_id, "succeeded")
        assert await votes(stack) == [("U04DAVE", "approve")]
        assert bump.executed == [proposal.run_id]


async def test_the_sweeper_never_overwrites_a_request_decided_meanwhile(
    stack: SandboxStack, bump: BumpExecutor
) -> None:
    """The decision UPDATE is conditional on `state = pending`: the expiry sweeper that
    read the request as due just before bob approved it must change nothing."""
    proposal = await ask(stack)
    assert proposal.approval_id
    approval_id = proposal.approval_id
    await click(stack, "bob", await card(stack, approval_id))
    await run_state(stack, proposal.run_id, "succeeded")

    desk = stack.bot.approvals.desk
    expired = await stack.bot.db.run(lambda s: desk._expire(s, approval_id=approval_id))
    closed = await stack.bot.db.run(
        lambda s: desk.store.close(
            s, approval_id, state="stale", by=desk_actor(stack), reason="moved"
        )
    )

    assert (expired, closed) == (0, False)
    assert await approval_state(stack, approval_id) == "approved"
    row = await stack.bot.db.run(lambda s: s.get_one(ApprovalRow, approval_id))
    assert row.closed_reason is None
    assert await stack.bot.db.run(lambda s: s.get_one(RunRow, proposal.run_id).state) == (
        "succeeded"
    )
    events = [event for _, event, _ in await audit_events(stack)]
    assert "approval.expired" not in events and "approval.stale" not in events


def desk_actor(stack: SandboxStack) -> str:
    return stack.workspace.user("dave").id


async def test_a_rejection_racing_an_expiry_is_decided_once(
    stack: SandboxStack, bump: BumpExecutor
) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    approval_id = proposal.approval_id
    desk = stack.bot.approvals.desk
    assert await stack.bot.db.run(lambda s: desk._expire(s, approval_id=approval_id)) == 1
    again = await stack.bot.db.run(
        lambda s: desk.store.close(s, approval_id, state="stale", by=desk_actor(stack), reason="x")
    )
    assert again is False
    assert await approval_state(stack, approval_id) == "expired"
    events = [event for _, event, _ in await audit_events(stack)]
    assert events.count("approval.expired") == 1 and "approval.stale" not in events


async def test_a_break_glass_reason_cannot_ping_the_audit_channel(
    stack: SandboxStack, bump: BumpExecutor
) -> None:
    reason = "<!channel> checkout is down, see <https://evil.example.com|the runbook> & <@U02BOB>"
    proposal = await ask(stack, user="dave", break_glass=True, reason=reason)
    await run_state(stack, proposal.run_id, "succeeded")

    await stack.slack.wait_for(
        lambda call: (
            call.method == "chat.postMessage" and call.args.get("channel") == "#platform-audit"
        )
    )
    (note,) = stack.slack.messages["C04AUDIT"]
    assert note.text.endswith(
        "Reason: &lt;!channel&gt; checkout is down, see "
        "&lt;https://evil.example.com|the runbook&gt; &amp; &lt;@U02BOB&gt;"
    )
    assert "<!channel>" not in note.text and "<https://evil" not in note.text
    assert "<@U02BOB>" not in note.text
