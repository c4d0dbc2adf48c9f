"""50 clicks at once on one approval request, through two bot processes on one PostgreSQL.

Approvals and a rejection race each other, from several people, half through each
bot's HTTP endpoint, some delivered twice (as Slack redelivers), alongside refused
clicks. Exactly one outcome must win, the Run must execute at most once (exactly once
when approved), and the votes recorded must be exactly those that counted.

The second bot is this file run as a script:

    python tests/integration/test_approvals_concurrency.py DATABASE_URL SLACK_API_URL CONFIG LOG

It serves on a free port (printed as `port N`), runs Bump Runs by appending
"<run id> <worker>" to LOG, and stops when its standard input closes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode

from kernel.actions import Action, Step, StepContext
from kernel.ids import SlackChannelId, SlackUserId

SAMPLE = Path(__file__).resolve().parents[2] / "sandbox" / "app" / "sample" / "platform.yml"
PAYMENTS = "C01PAYMENTS"


class Bump(Action):
    kind: ClassVar[str] = "test.bump"
    service: str
    env: str


class FileBump:
    """Runs a Bump by appending one line to a log shared by both processes."""

    action_type: ClassVar[type[Action]] = Bump

    def __init__(self, log: Path, worker: str) -> None:
        self.log, self.worker = log, worker

    def steps(self, action: Action) -> Sequence[Step]:
        async def bump(ctx: StepContext) -> dict[str, Any]:
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{ctx.run_id} {self.worker}\n".encode())
            finally:
                os.close(fd)
            return {}

        return [Step("bump", "Bump", bump)]


def quorum_config(tmp_path: Path) -> Path:
    """Two approvals from SRE, platform admins or search; alice asks."""
    text = SAMPLE.read_text()
    old = "    approvals: 1\n    approvers: {teams: [sre], usergroups: [S02SRE]}"
    new = "    approvals: 2\n    approvers: {teams: [search], usergroups: [S02SRE, S03PLATFORM]}"
    assert old in text
    templates = (SAMPLE.parent / "../../templates").resolve()
    path = tmp_path / "platform.yml"
    path.write_text(text.replace(old, new).replace("../../templates", str(templates)))
    return path


# -- the second bot process ------------------------------------------------------------


async def serve_second_bot(url: str, slack_api_url: str, config: Path, log: Path) -> None:
    from app.bootstrap import build_app
    from app.settings import Settings
    from sandbox.app.stack import SANDBOX_WORKSPACE, SIGNING_SECRET

    settings = Settings(
        slack_bot_token=SANDBOX_WORKSPACE.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack_api_url,
        database_url=url,
        platform_config=config,
        host="127.0.0.1",
        port=0,
        worker_id="bot-2",
    )
    bot = build_app(settings, executors=[FileBump(log, "bot-2")], auto_upgrade=False)
    await bot.start()
    print(f"port {bot.port}", flush=True)
    try:
        await asyncio.to_thread(sys.stdin.read)  # until the test closes our stdin
    finally:
        await bot.stop()


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    asyncio.run(serve_second_bot(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])))


# -- the test ----------------------------------------------------------------------------

from sqlalchemy import select  # noqa: E402 - the script above needs none of these
from sqlalchemy.orm import Session  # noqa: E402

from engine.db import RunRow  # noqa: E402
from features.approvals.tables import ApprovalRow, ApprovalVoteRow  # noqa: E402
from sandbox.app.stack import SIGNING_SECRET, SandboxStack, sandbox_stack  # noqa: E402
from sandbox.standins.slack_client import SlackSender  # noqa: E402


def _payload_body(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def click_body(stack: SandboxStack, user: str, message_ts: str, value: str, n: int) -> bytes:
    """A block_actions delivery of an Approve click, as Slack sends it."""
    who = stack.workspace.user(user)
    ws = stack.workspace
    return _payload_body(
        {
            "type": "block_actions",
            "user": {"id": who.id, "username": who.name, "team_id": ws.team_id},
            "api_app_id": ws.app_id,
            "team": {"id": ws.team_id, "domain": ws.domain},
            "trigger_id": stack.slack.issue_trigger_id(user=who.id),
            "container": {"type": "message", "message_ts": message_ts, "channel_id": PAYMENTS},
            "channel": {"id": PAYMENTS, "name": "payments"},
            "message": stack.slack.message(PAYMENTS, message_ts).to_dict(),
            "response_url": stack.slack.new_response_url(
                channel=PAYMENTS, user=who.id, message_ts=message_ts
            ),
            "actions": [
                {
                    "action_id": "approval.approve",
                    "block_id": "approval_actions",
                    "type": "button",
                    "value": value,
                    "action_ts": f"1790000000.{n:06d}",
                }
            ],
            "state": {"values": {}},
        }
    )


def reject_body(stack: SandboxStack, user: str, view: dict[str, Any], reason: str) -> bytes:
    """A view_submission of the Reject modal with `reason`."""
    who = stack.workspace.user(user)
    ws = stack.workspace
    state = {"values": {"reason": {"value": {"type": "plain_text_input", "value": reason}}}}
    return _payload_body(
        {
            "type": "view_submission",
            "team": {"id": ws.team_id, "domain": ws.domain},
            "user": {"id": who.id, "username": who.name, "team_id": ws.team_id},
            "api_app_id": ws.app_id,
            "trigger_id": stack.slack.issue_trigger_id(user=who.id),
            "view": {**view, "state": state},
            "response_urls": [],
        }
    )


async def test_fifty_concurrent_clicks_two_processes_one_outcome(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "bumped.log"
    config = quorum_config(tmp_path)
    async with sandbox_stack(
        database_url=postgres_url, config=config, executors=[FileBump(log, "bot-1")], seed=False
    ) as stack:
        second = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            postgres_url,
            stack.slack.api_url,
            str(config),
            str(log),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            line = await asyncio.wait_for(second.stdout.readline(), timeout=30)  # type: ignore[union-attr]
            assert line.startswith(b"port "), (await second.communicate())[1].decode()[-2000:]
            other = SlackSender(
                events_url=f"http://127.0.0.1:{int(line.split()[1])}/slack/events",
                signing_secret=SIGNING_SECRET,
                workspace=stack.workspace,
                standin=stack.slack,
            )
            async with other:
                mixed = await _race(stack, (stack.sender, other), log, key="mixed", reject=True)
                assert mixed in ("approved", "rejected")
                only = await _race(stack, (stack.sender, other), log, key="only", reject=False)
                assert only == "approved"
        finally:
            if second.stdin is not None:
                second.stdin.close()
            _, stderr = await asyncio.wait_for(second.communicate(), timeout=30)
            assert second.returncode == 0, stderr.decode()[-2000:]


def _executed(log: Path, run_id: str) -> list[str]:
    """The workers that executed `run_id`, once per execution."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [worker for run, worker in (line.split() for line in lines) if run == run_id]


async def _race(
    stack: SandboxStack,
    senders: tuple[SlackSender, SlackSender],
    log: Path,
    *,
    key: str,
    reject: bool,
) -> str:
    """50 clicks at one new request (with carol's rejection among them if `reject`);
    checks the outcome is consistent and returns it (approved or rejected)."""
    proposal = await stack.bot.ports.changes.propose(
        Bump(service="checkout", env="prod"),
        requested_by=SlackUserId("U01ALICE"),
        idempotency_key=key,
        reply_channel=SlackChannelId(PAYMENTS),
        reason="race",
    )
    approval_id = proposal.approval_id
    assert approval_id is not None
    card = None
    for _ in range(200):
        card = next(
            (m for m in stack.slack.messages.get(PAYMENTS, []) if approval_id in str(m.blocks)),
            None,
        )
        if card is not None:
            break
        await asyncio.sleep(0.05)
    assert card is not None

    bodies: list[bytes] = []
    for n in range(6):  # each click delivered twice: 24 approvals by two eligible people
        for user in ("bob", "dave"):
            body = click_body(stack, user, card.ts, approval_id, len(bodies) + n)
            bodies += [body, body]
    if reject:  # carol opens the Reject modal first; her submission races the approvals
        opened = await stack.sender.block_actions(
            user="carol", action_id="approval.reject", channel=PAYMENTS, message_ts=card.ts
        )
        assert opened.status == 200
        await stack.slack.wait_for("views.open")
        (view,) = [v.view for v in stack.slack.views.values() if v.user == "U03CAROL"]
        rejection = reject_body(stack, "carol", view, "not during the sale")
        bodies += [rejection] * 8  # one submission, redelivered
    else:  # carol approves instead: a third eligible voter, one too many
        for n in range(4):
            body = click_body(stack, "carol", card.ts, approval_id, 300 + n)
            bodies += [body, body]
    for n in range(9):  # refused: the requester, and someone in no group
        bodies.append(click_body(stack, "alice", card.ts, approval_id, 100 + n))
        bodies.append(click_body(stack, "erin", card.ts, approval_id, 200 + n))
    assert len(bodies) == 50
    random.Random(4).shuffle(bodies)

    answers = await asyncio.gather(
        *(
            senders[i % 2].raw(body, content_type="application/x-www-form-urlencoded")
            for i, body in enumerate(bodies)
        )
    )
    assert [a.status for a in answers] == [200] * 50

    run_state = ""
    for _ in range(300):
        run_state = await stack.bot.db.run(lambda s: s.get_one(RunRow, proposal.run_id).state)
        if run_state in ("succeeded", "cancelled"):
            break
        await asyncio.sleep(0.05)

    def outcome(session: Session) -> tuple[str, list[tuple[str, str]]]:
        state = session.get_one(ApprovalRow, approval_id).state
        votes = session.execute(
            select(ApprovalVoteRow.voter, ApprovalVoteRow.vote).where(
                ApprovalVoteRow.approval_id == approval_id
            )
        ).all()
        return state, sorted((str(v), str(w)) for v, w in votes)

    await asyncio.sleep(0.5)  # let any late click land: it must change nothing
    state, votes = await stack.bot.db.run(outcome)
    executed = await asyncio.to_thread(_executed, log, proposal.run_id)
    print(f"outcome {state}: votes {votes}; executed by {executed}")
    if state == "approved":
        assert run_state == "succeeded"
        assert len(votes) == 2 and {vote for _, vote in votes} == {"approve"}
        assert len(executed) == 1
    else:
        assert state == "rejected" and run_state == "cancelled"
        assert ("U03CAROL", "reject") in votes
        assert sum(1 for _, vote in votes if vote == "approve") <= 1
        assert executed == []
    assert len({voter for voter, _ in votes}) == len(votes)  # one vote each
    assert not {voter for voter, _ in votes} & {"U01ALICE", "U05ERIN"}

    headline = {"approved": ":white_check_mark:", "rejected": ":no_entry:"}[state]
    for _ in range(300):
        if stack.slack.message(PAYMENTS, card.ts).text.startswith(headline):
            break
        await asyncio.sleep(0.05)
    final = stack.slack.message(PAYMENTS, card.ts)
    assert final.text.startswith(headline)
    approvals = sum(1 for _, vote in votes if vote == "approve")
    assert f"*Votes:* {approvals} of 2" in final.blocks[1]["text"]["text"]
    return state
