"""Issue 10 item 5: with 500 teams and cold caches, an approval click asks Slack at most
once for who people are, with Slack as slow as the real one (150 ms a call), and the
ack comes well inside Slack's 3 seconds; membership follows Slack's subteam events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import delete

from engine.directory import SlackDirectory
from engine.directory_tables import SlackDirectoryStateRow, SlackUsergroupMemberRow
from sandbox.app.stack import SANDBOX_WORKSPACE, SandboxStack, sandbox_stack
from sandbox.standins.slack_api import SlackUserGroup
from tests.e2e.test_approvals import (
    PAYMENTS,
    BumpExecutor,
    ask,
    card,
    card_saying,
    click,
    config_with,
    run_state,
)

TEAMS = 500
LATENCY_MS = 150
DIRECTORY_METHODS = frozenset(
    {"usergroups.list", "usergroups.users.list", "users.info", "users.lookupByEmail"}
)


def big_config(tmp_path: Path) -> Path:
    """The sample catalog plus 500 teams, each with its own Slack user group; nobody
    listed by e-mail (carol by her Slack id), so no click needs users.info either."""
    teams = "".join(
        f"  team-{i:03d}:\n"
        f'    slack_channel: "#payments"\n'
        f"    slack_usergroup: S9{i:04d}\n"
        f"    members: [U9{i:04d}]\n"
        for i in range(TEAMS)
    )
    path = config_with(tmp_path, "\nteams:\n", "\nteams:\n" + teams)  # not on_demand.teams
    path.write_text(path.read_text().replace("carol@example.com", "U03CAROL"))
    return path


@pytest.fixture
def bump() -> BumpExecutor:
    return BumpExecutor()


@pytest.fixture
async def stack(
    database_url: str, bump: BumpExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[SandboxStack]:
    monkeypatch.setenv("SANDBOX_SLACK_LATENCY_MS", str(LATENCY_MS))
    groups = tuple(
        SlackUserGroup(f"S9{i:04d}", f"team-{i:03d}", f"Team {i}", (f"U9{i:04d}",))
        for i in range(TEAMS)
    )
    workspace = replace(SANDBOX_WORKSPACE, usergroups=SANDBOX_WORKSPACE.usergroups + groups)
    async with sandbox_stack(
        database_url=database_url,
        executors=[bump],
        seed=False,
        config=big_config(tmp_path),
        workspace=workspace,
    ) as running:
        yield running


async def make_cold(stack: SandboxStack) -> SlackDirectory:
    """Empty the table and the replica's memory, as on a first start."""
    directory = stack.bot.ports.directory
    assert isinstance(directory, SlackDirectory)

    def wipe(session: object) -> None:
        session.execute(delete(SlackUsergroupMemberRow))  # type: ignore[attr-defined]
        session.execute(delete(SlackDirectoryStateRow))  # type: ignore[attr-defined]

    await stack.bot.db.run(wipe)  # type: ignore[arg-type]
    directory.drop_memory()
    return directory


def directory_calls(stack: SandboxStack, since: int) -> list[str]:
    return [c.method for c in stack.slack.calls[since:] if c.method in DIRECTORY_METHODS]


async def test_a_cold_approval_click_asks_slack_at_most_once_with_500_teams(
    stack: SandboxStack,
) -> None:
    assert stack.slack.latency_s == pytest.approx(LATENCY_MS / 1000)
    assert len(stack.bot.ports.catalog.model.teams) == TEAMS + 3
    proposal = await ask(stack)
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    await make_cold(stack)

    mark = len(stack.slack.calls)
    started = time.perf_counter()
    response = await stack.sender.block_actions(
        user="bob",
        action_id="approval.approve",
        channel=PAYMENTS,
        message_ts=request.ts,
        value=proposal.approval_id,
    )
    acked_in = time.perf_counter() - started
    assert response.status == 200
    assert acked_in < 1.0, f"the click was acked after {acked_in:.2f} s"
    await run_state(stack, proposal.run_id, "succeeded")
    await card_saying(stack, request, ":white_check_mark: *Approved*")
    assert directory_calls(stack, mark) == ["usergroups.list"]

    # Warm: the next clicks ask Slack nothing at all about people.
    second = await ask(stack, key="ask-2")
    assert second.approval_id
    request = await card(stack, second.approval_id)
    mark = len(stack.slack.calls)
    assert "cannot vote on it" in await click(stack, "alice", request)
    assert "not one of them" in await click(stack, "carol", request)
    assert "that was the last approval" in await click(stack, "bob", request)
    assert directory_calls(stack, mark) == []


async def test_subteam_events_change_who_may_approve_without_asking_slack(
    stack: SandboxStack,
) -> None:
    proposal = await ask(stack, key="ask-events")
    assert proposal.approval_id
    request = await card(stack, proposal.approval_id)
    directory = stack.bot.ports.directory
    assert isinstance(directory, SlackDirectory)
    await directory.snapshot()
    mark = len(stack.slack.calls)

    # bob leaves the SRE group: Slack tells us, and his click no longer counts.
    response = await stack.sender.event_callback(
        {
            "type": "subteam_members_changed",
            "subteam_id": "S02SRE",
            "team_id": stack.workspace.team_id,
            "added_users": ["U03CAROL"],
            "added_users_count": "1",
            "removed_users": ["U02BOB"],
            "removed_users_count": "1",
        },
        event_id="Ev0SRE1",
    )
    assert response.status == 200
    for _ in range(100):
        if await directory.usergroup_members("S02SRE") == {"U03CAROL"}:
            break
        await asyncio.sleep(0.05)
    assert "not one of them" in await click(stack, "bob", request)
    assert "that was the last approval" in await click(stack, "carol", request)
    assert directory_calls(stack, mark) == []
