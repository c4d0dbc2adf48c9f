"""Four-eyes approvals, clicked as in Slack: every refusal with the message people see.

A test-only Action (`Bump`) and executor stand in for a prod rollback: its
`stale_reason` is whatever the test sets, so "prod moved since" is under control.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.cli import main
from engine.db import AuditRow, RunRow, utcnow
from features.approvals.tables import ApprovalRow, ApprovalVoteRow
from kernel.actions import Action, Step, StepContext
from kernel.errors import ChangeRefused
from kernel.ids import SlackChannelId, SlackUserId
from kernel.ports.platform import Proposal
from sandbox.app.stack import SAMPLE_CONFIG, SANDBOX_WORKSPACE, SandboxStack, sandbox_stack
from sandbox.standins.slack_api import Message, SlackStandIn
from tests.harness import Chat

PAYMENTS = "C01PAYMENTS"
BOT = "platform-bot"
"""The audit log's actor for what the sweeper does."""


class Bump(Action):
    """Bump a service's counter in an environment (test only)."""

    kind: ClassVar[str] = "test.bump"
    service: str
    env: str

    def lock_key(self) -> str | None:
        return f"{self.service}/{self.env}"

    def change_lines(self) -> list[str]:
        return [f"counter of `{self.service}` in {self.env}: 41 -> 42"]


class BumpExecutor:
    action_type: ClassVar[type[Action]] = Bump

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.moved: str | None = None
        """What `stale_reason` answers: set it to make the live target differ."""

    async def stale_reason(self, action: Action) -> str | None:
        return self.moved

    def steps(self, action: Action) -> Sequence[Step]:
        async def bump(ctx: StepContext) -> dict[str, Any]:
            self.executed.append(ctx.run_id)
            return {}

        return [Step("bump", "Bump the counter", bump)]


@pytest.fixture
def bump() -> BumpExecutor:
    return BumpExecutor()


@pytest.fixture
async def stack(database_url: str, bump: BumpExecutor) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, executors=[bump], seed=False) as running:
        yield running


def config_with(tmp_path: Path, old: str, new: str) -> Path:
    """The sample platform.yml with one edit, in a temp dir."""
    text = SAMPLE_CONFIG.read_text()
    assert old in text
    templates = (SAMPLE_CONFIG.parent / "../../templates").resolve()
    text = text.replace(old, new).replace("../../templates", str(templates))
    path = tmp_path / "platform.yml"
    path.write_text(text)
    return path


async def ask(
    stack: SandboxStack,
    *,
    user: str = "alice",
    service: str = "checkout",
    env: str = "prod",
    key: str = "ask-1",
    reason: str | None = "bad deploy",
    break_glass: bool = False,
) -> Proposal:
    return await stack.bot.ports.changes.propose(
        Bump(service=service, env=env),
        requested_by=SlackUserId(stack.workspace.user(user).id),
        idempotency_key=key,
        reply_channel=SlackChannelId(PAYMENTS),
        reason=reason,
        break_glass=break_glass,
    )


async def card(stack: SandboxStack, approval_id: str) -> Message:
    """The request's card, found by the id its buttons carry."""
    for _ in range(300):
        for messages in stack.slack.messages.values():
            for message in messages:
                if approval_id in json.dumps(message.blocks):
                    return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no card for {approval_id}")


async def card_saying(
    stack: SandboxStack, card: Message, headline: str, detail: str = ""
) -> Message:
    """The card, once updated in place to start with `headline` (and show `detail`)."""
    for _ in range(300):
        message = stack.slack.message(card.channel, card.ts)
        if message.text.startswith(headline) and detail in json.dumps(message.blocks):
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"the card never said {headline!r} {detail!r}: {message.blocks}")


def old_copy(stack: SandboxStack, approval_id: str) -> Message:
    """A message with an Approve button for `approval_id`, as a stale screen still shows."""
    return stack.slack.add_user_message(
        "#payments",
        user="U01ALICE",
        text="an old copy of the card",
        blocks=[
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approval.approve",
                        "value": approval_id,
                        "text": {"type": "plain_text", "text": "Approve"},
                    }
                ],
            }
        ],
    )


async def click(
    stack: SandboxStack,
    user: str,
    message: Message,
    action_id: str = "approval.approve",
    *,
    value: str | None = None,
) -> str:
    """`user` clicks a button on `message`; what they are told, ephemerally."""
    who = stack.workspace.user(user).id
    mark = len(stack.slack.ephemerals)
    response = await stack.sender.block_actions(
        user=user, action_id=action_id, channel=PAYMENTS, message_ts=message.ts, value=value
    )
    assert response.status == 200
    for _ in range(300):
        for seen in stack.slack.ephemerals[mark:]:
            if seen.user == who:
                return seen.text
        await asyncio.sleep(0.02)
    raise AssertionError(f"{user} was told nothing")


async def dm_to(stack: SandboxStack, user: str, containing: str) -> str:
    im = "D" + stack.workspace.user(user).id[1:]
    for _ in range(300):
        for message in stack.slack.messages.get(im, []):
            if containing in message.text:
                return message.text
        await asyncio.sleep(0.05)
    raise AssertionError(f"no DM to {user} containing {containing!r}")


async def audit_events(stack: SandboxStack) -> list[tuple[str, str, str]]:
    def query(session: Session) -> list[tuple[str, str, str]]:
        rows = session.execute(select(AuditRow).order_by(AuditRow.id)).scalars()
        return [
            (r.actor, r.event, str(r.detail.get("why") or r.detail.get("vote") or ""))
            for r in rows
            if r.event.startswith(("approval.", "break_glass", "run.break_glass"))
        ]

    return await stack.bot.db.run(query)


async def run_state(stack: SandboxStack, run_id: str, want: str) -> None:
    for _ in range(300):
        state = await stack.bot.db.run(lambda s: s.get_one(RunRow, run_id).state)
        if state == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"Run {run_id} is {state}, not {want}")


# -- the story of issue 4 ------------------------------------------------------------------


async def test_alice_cannot_approve_carol_cannot_bob_can_and_it_runs_once(
    stack: SandboxStack, bump: BumpExecutor
) -> None:
    proposal = await ask(stack)
    assert proposal.rule == "prod-changes" and proposal.approval_id
    assert proposal.expires_at is not None
    request = await card(stack, proposal.approval_id)
    assert request.channel == PAYMENTS  # the owning team's channel
    details = request.blocks[1]["text"]["text"]
    assert "• counter of `checkout` in prod: 41 -> 42" in details
    assert "*Reason:* bad deploy" in details
    assert "<!subteam^S02SRE> or team `sre`" in details
    assert await dm_to(stack, "bob", "asks for your approval")  # one approver: DMed

    assert await click(stack, "alice", request) == (
        "You asked for this change, so you cannot vote on it: four eyes means someone else "
        "decides. It needs <!subteam^S02SRE> or team `sre`."
    )
    assert await click(stack, "carol", request) == (
        "Only <!subteam^S02SRE> or team `sre` may vote on this request (rule `prod-changes`), "
        "and you are not one of them. Nothing was recorded."
    )
    assert await click(stack, "bob", request) == (
        "You approved `test.bump(service=checkout, env=prod)`: that was the last approval "
        "needed, so it runs now."
    )
    await run_state(stack, proposal.run_id, "succeeded")
    approved = await card_saying(stack, request, ":white_check_mark: *Approved*")
    assert "*Votes:* 1 of 1: <@U02BOB> approved" in approved.blocks[1]["text"]["text"]
    assert all(b["type"] != "actions" for b in approved.blocks)
    assert await dm_to(stack, "alice", "was approved by <@U02BOB>; it runs now")

    # a double click from a stale screen: the request is decided, nothing runs twice
    assert await click(stack, "bob", old_copy(stack, proposal.approval_id)) == (
        "The request for `test.bump(service=checkout, env=prod)` was already approved; your "
        "click changed nothing."
    )
    await asyncio.sleep(0.3)
    assert bump.executed == [proposal.run_id]
    assert await audit_events(stack) == [
        ("U01ALICE", "approval.requested", ""),
        ("U01ALICE", "approval.refused", "own_request"),
        ("U03CAROL", "approval.refused", "not_eligible"),
        ("U02BOB", "approval.voted", "approve"),
        ("U02BOB", "approval.approved", ""),
        ("U02BOB", "approval.refused", "closed"),
    ]


async def test_quorum_of_two_and_a_second_vote_by_the_same_person(
    database_url: str, tmp_path: Path, bump: BumpExecutor
) -> None:
    config = config_with(
        tmp_path,
        "    approvals: 1\n    approvers: {teams: [sre], usergroups: [S02SRE]}",
        "    approvals: 2\n    approvers: {usergroups: [S02SRE, S03PLATFORM]}",
    )
    async with sandbox_stack(
        database_url=database_url, config=config, executors=[bump], seed=False
    ) as stack:
        proposal = await ask(stack)
        assert proposal.approval_id
        request = await card(stack, proposal.approval_id)
        assert await click(stack, "bob", request) == (
            "You approved `test.bump(service=checkout, env=prod)`: 1 of 2; it waits for 1 more."
        )
        assert await click(stack, "bob", request) == (
            "You already voted on this request; everyone votes once. Nothing was changed."
        )
        await card_saying(stack, request, ":lock:", "*Votes:* 1 of 2: <@U02BOB> approved")
        assert bump.executed == []
        assert await click(stack, "dave", request) == (
            "You approved `test.bump(service=checkout, env=prod)`: that was the last approval "
            "needed, so it runs now."
        )
        await run_state(stack, proposal.run_id, "succeeded")
        assert bump.executed == [proposal.run_id]
        votes = await stack.bot.db.run(
            lambda s: (
                s.execute(select(ApprovalVoteRow.voter).order_by(ApprovalVoteRow.id))
                .scalars()
                .all()
            )
        )
        assert votes == ["U02BOB", "U04DAVE"]


async def test_clicking_after_expiry_and_the_sweeper(stack: SandboxStack) -> None:
    first = await ask(stack, key="ask-1")
    second = await ask(stack, service="refunds", key="ask-2")
    assert first.approval_id and second.approval_id
    request = await card(stack, first.approval_id)
    refunds = await card(stack, second.approval_id)
    past = utcnow() - timedelta(minutes=1)
    await stack.bot.db.run(lambda s: s.execute(update(ApprovalRow).values(expires_at=past)))
    told = await click(stack, "bob", request)
    assert told == (
        f"The request for `test.bump(service=checkout, env=prod)` expired at {past:%H:%M} UTC; "
        "nothing was recorded. <@U01ALICE> can ask again."
    )
    expired = await card_saying(stack, request, ":hourglass: *Expired*")
    assert "Nothing was changed; ask again if it is still needed." in str(expired.blocks)
    await run_state(stack, first.run_id, "cancelled")

    desk = stack.bot.approvals.desk
    await desk.sweep_once()  # the second one, nobody clicked (unless the background sweep
    assert await desk.sweep_once() == 0  # got there first: either way, it expires once)
    await run_state(stack, second.run_id, "cancelled")
    expired_by_sweep = [e for e in await audit_events(stack) if e[1] == "approval.expired"]
    assert expired_by_sweep == [("U02BOB", "approval.expired", ""), (BOT, "approval.expired", "")]
    assert await dm_to(stack, "alice", "`test.bump(service=refunds, env=prod)` expired")
    refunds = await card_saying(stack, refunds, ":hourglass: *Expired*")
    assert all(b["type"] != "actions" for b in refunds.blocks)


async def test_clicking_after_the_target_changed_closes_the_request_as_stale(
    stack: SandboxStack, bump: BumpExecutor
) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    bump.moved = "the counter is 43 now, not 41"
    assert await click(stack, "bob", request) == (
        "prod moved since this was asked: the counter is 43 now, not 41. The request is closed "
        "as stale and nothing was changed; <@U01ALICE> must ask again."
    )
    stale = await card_saying(stack, request, ":warning: *Stale*")
    assert "prod moved since: the counter is 43 now, not 41." in str(stale.blocks)
    await run_state(stack, proposal.run_id, "cancelled")
    assert bump.executed == []


async def test_a_forged_click_with_a_bad_signature_does_nothing(stack: SandboxStack) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    mark = len(stack.slack.ephemerals)
    response = await stack.sender.block_actions(
        user="bob",
        action_id="approval.approve",
        channel=PAYMENTS,
        message_ts=request.ts,
        signature="v0=" + "0" * 64,
    )
    assert response.status == 401
    await asyncio.sleep(0.3)
    votes = await stack.bot.db.run(lambda s: s.execute(select(ApprovalVoteRow)).all())
    assert votes == [] and stack.slack.ephemerals[mark:] == []
    assert (await stack.bot.db.run(lambda s: s.get_one(RunRow, proposal.run_id).state)) == (
        "waiting_approval"
    )


async def test_a_click_from_another_workspace_does_nothing(stack: SandboxStack) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    response = await stack.sender.block_actions(
        user="bob",
        action_id="approval.approve",
        channel=PAYMENTS,
        message_ts=request.ts,
        team_id="T0ELSEWHERE",
    )
    assert response.status == 200 and response.body == ""
    await asyncio.sleep(0.3)
    assert await stack.bot.db.run(lambda s: s.execute(select(ApprovalVoteRow)).all()) == []


async def test_a_value_naming_another_request_acts_on_that_one_with_its_own_checks(
    stack: SandboxStack, bump: BumpExecutor
) -> None:
    alices = await ask(stack, key="ask-alice")
    carols = await ask(stack, user="carol", service="search-api", key="ask-carol")
    assert alices.approval_id and carols.approval_id
    request = await card(stack, alices.approval_id)
    told = await click(stack, "carol", request, value=carols.approval_id)
    assert told.startswith("You asked for this change, so you cannot vote on it")
    told = await click(stack, "bob", request, value=carols.approval_id)
    assert told.startswith("You approved `test.bump(service=search-api, env=prod)`")
    await run_state(stack, carols.run_id, "succeeded")
    assert bump.executed == [carols.run_id]  # alice's request still waits
    assert (await stack.bot.db.run(lambda s: s.get_one(ApprovalRow, alices.approval_id).state)) == (
        "pending"
    )


async def test_unknown_request_id(stack: SandboxStack) -> None:
    assert await click(stack, "bob", old_copy(stack, "0" * 32)) == (
        "There is no such approval request; nothing was recorded. "
        "Type `/platform approvals` to see the requests waiting for you."
    )


async def test_reject_asks_why_and_an_empty_reason_is_refused_on_the_form(
    stack: SandboxStack, bump: BumpExecutor
) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    response = await stack.sender.block_actions(
        user="bob", action_id="approval.reject", channel=PAYMENTS, message_ts=request.ts
    )
    assert response.status == 200
    await stack.slack.wait_for("views.open")
    (view_id,) = [v.id for v in stack.slack.views.values() if v.user == "U02BOB"]
    empty = await stack.sender.view_submission(
        user="bob", view_id=view_id, values={"reason": {"value": "   "}}
    )
    assert empty.json() == {
        "response_action": "errors",
        "errors": {"reason": "Say why you reject it, so the requester knows what to change."},
    }
    mark = len(stack.slack.ephemerals)
    done = await stack.sender.view_submission(
        user="bob", view_id=view_id, values={"reason": {"value": "not during <!here> peak"}}
    )
    assert done.status == 200 and not done.body.strip()
    rejected = await card_saying(stack, request, ":no_entry: *Rejected*")
    assert "Rejected by <@U02BOB>: not during &lt;!here&gt; peak. Nothing was changed." in str(
        rejected.blocks
    )
    await run_state(stack, proposal.run_id, "cancelled")
    assert await dm_to(stack, "alice", "was rejected by <@U02BOB>: not during &lt;!here&gt; peak")
    await stack.slack.wait_for("chat.postEphemeral", start=0)
    told = [e.text for e in stack.slack.ephemerals[mark:] if e.user == "U02BOB"]
    assert told == [
        "You rejected `test.bump(service=checkout, env=prod)`; nothing will change. "
        "<@U01ALICE> is told."
    ]
    assert bump.executed == []


async def test_carol_cannot_even_open_the_reject_form(stack: SandboxStack) -> None:
    proposal = await ask(stack)
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    told = await click(stack, "carol", request, "approval.reject")
    assert told.startswith("Only <!subteam^S02SRE> or team `sre` may vote on this request")
    assert stack.slack.views == {}


async def test_a_rule_whose_group_slack_does_not_know_is_refused_when_asked(
    database_url: str, tmp_path: Path, bump: BumpExecutor
) -> None:
    config = config_with(
        tmp_path,
        "approvers: {teams: [sre], usergroups: [S02SRE]}",
        "approvers: {usergroups: [S09NOPE]}",
    )
    async with sandbox_stack(
        database_url=database_url, config=config, executors=[bump], seed=False
    ) as stack:
        with pytest.raises(ChangeRefused) as refused:
            await ask(stack)
        assert refused.value.message == (
            "Nobody can approve this: rule `prod-changes` names <!subteam^S09NOPE>, and Slack "
            "knows nobody there but you. Ask a platform admin to fix `approval_policies` in "
            "platform.yml."
        )
        assert await stack.bot.db.run(lambda s: s.execute(select(RunRow)).all()) == []


async def test_a_rule_requiring_a_reason_refuses_a_request_without_one(
    database_url: str, tmp_path: Path, bump: BumpExecutor
) -> None:
    config = config_with(tmp_path, "    expires_minutes: 30\n", "    require_reason: true\n")
    async with sandbox_stack(
        database_url=database_url, config=config, executors=[bump], seed=False
    ) as stack:
        with pytest.raises(ChangeRefused) as refused:
            await ask(stack, reason="  ")
        assert refused.value.message == (
            "Rule `prod-changes` needs a reason for this change, so approvers know why. "
            'Ask again with a reason, e.g. `--reason "bad deploy at 14:02"`.'
        )


async def test_break_glass_by_an_admin_runs_flagged_and_tells_the_audit_channel(
    stack: SandboxStack, bump: BumpExecutor
) -> None:
    with pytest.raises(ChangeRefused) as refused:
        await ask(stack, break_glass=True, key="alice-glass")
    assert refused.value.message == (
        "Only platform admins may break glass. Ask without it, and the change waits for its "
        "approvals."
    )
    with pytest.raises(ChangeRefused) as refused:
        await ask(stack, user="dave", break_glass=True, reason=None, key="dave-no-reason")
    assert refused.value.message.startswith("Breaking glass needs a reason")

    proposal = await ask(stack, user="dave", break_glass=True, reason="checkout is down")
    assert proposal.break_glass and proposal.approval_id is None
    await run_state(stack, proposal.run_id, "succeeded")
    assert bump.executed == [proposal.run_id]
    flags = await stack.bot.db.run(lambda s: s.get_one(RunRow, proposal.run_id).flags)
    assert flags["break_glass"] is True
    await stack.slack.wait_for(
        lambda call: (
            call.method == "chat.postMessage" and call.args.get("channel") == "#platform-audit"
        )
    )
    (note,) = stack.slack.messages["C04AUDIT"]
    assert note.text == (
        ":rotating_light: *Break-glass*: <@U04DAVE> runs `test.bump(service=checkout, env=prod)` "
        "without approval (rule `prod-changes`). Reason: checkout is down"
    )
    assert [e for e in await audit_events(stack) if e[1] != "approval.requested"] == [
        ("U01ALICE", "break_glass.refused", ""),
        ("U04DAVE", "run.break_glass", ""),
    ]


async def test_platform_approvals_lists_what_waits_for_me_and_what_i_asked(
    stack: SandboxStack,
) -> None:
    proposal = await ask(stack)
    assert proposal.expires_at is not None
    chat = Chat(stack)
    bob = await chat.say("/platform approvals", as_user="bob")
    assert bob.text.splitlines() == [
        "*Waiting for your vote*",
        "• `test.bump(service=checkout, env=prod)`: waiting, 0 of 1 approval(s), expires "
        f"{proposal.expires_at:%H:%M} UTC, asked by <@U01ALICE>",
        "*You asked for*",
        "• nothing yet. Changes that need approval show up here once you ask for one.",
    ]
    alice = await chat.say("/platform approvals", as_user="alice")
    assert alice.text.splitlines() == [
        "*Waiting for your vote*",
        "• nothing; all clear.",
        "*You asked for*",
        "• `test.bump(service=checkout, env=prod)`: waiting, 0 of 1 approval(s), expires "
        f"{proposal.expires_at:%H:%M} UTC",
    ]
    carol = await chat.say("/platform approvals", as_user="carol")
    assert carol.text.splitlines()[1] == "• nothing; all clear."


async def test_policy_explain_asks_slack_and_names_a_group_it_does_not_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_with(tmp_path, "usergroups: [S02SRE]", "usergroups: [S02SRE, S09NOPE]")
    slack = SlackStandIn(SANDBOX_WORKSPACE)
    await slack.start()
    try:
        monkeypatch.setenv("PLATFORM_CONFIG", str(config))
        monkeypatch.setenv("SLACK_BOT_TOKEN", SANDBOX_WORKSPACE.bot_token)
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        argv = ["policy", "explain", "rollback", "checkout", "prod", "--as", "U02BOB"]
        code = await asyncio.to_thread(main, argv)
    finally:
        await slack.stop()
    out, err = capsys.readouterr()
    assert code == 1
    assert out.splitlines()[-1] == (
        "U02BOB may approve it (and never their own request); teams: sre"
    )
    assert err == (
        "approval_policies[0].approvers.usergroups[1]: Slack has no user group S09NOPE "
        "(rule 'prod-changes'), so nobody can approve through it; write the id "
        "usergroups.list shows (S...)\n"
    )
