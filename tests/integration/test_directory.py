"""User-group membership in the database: filled with one Tier 2 call, kept current by
events without any call, shared by replicas; 429s retried after Retry-After.

Real slack_sdk clients against the Slack stand-in (which enforces the tiers), on both
databases.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from app.slack.clients import outbox_client, with_rate_limit_retries
from engine.db import Database
from engine.directory import SlackDirectory
from kernel.errors import TryAgainLater
from sandbox.standins.slack_api import SlackStandIn, SlackUserGroup
from tests.standins.test_slack_standin import BOT_TOKEN, make_workspace

DIRECTORY_METHODS = ("usergroups.list", "usergroups.users.list", "users.info")


def directory_calls(slack: SlackStandIn) -> int:
    return sum(len(slack.calls_to(m)) for m in DIRECTORY_METHODS)


def many_groups(count: int) -> tuple[SlackUserGroup, ...]:
    return tuple(
        SlackUserGroup(f"S{i:04d}", f"team-{i}", f"Team {i}", (f"U{i:04d}",)) for i in range(count)
    )


async def test_a_cold_directory_asks_slack_once_for_every_group(db: Database) -> None:
    workspace = replace(make_workspace(), usergroups=many_groups(500))
    async with SlackStandIn(workspace, latency_ms=0) as slack:
        client = with_rate_limit_retries(AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url))
        directory = SlackDirectory(client, db)
        for i in range(500):
            assert await directory.usergroup_members(f"S{i:04d}") == {f"U{i:04d}"}
        assert await directory.usergroup_members("S9999") == frozenset()
        assert len(slack.calls_to("usergroups.list")) == 1
        assert slack.calls_to("usergroups.list")[0].args["include_users"] in ("1", "true", True)
        assert directory_calls(slack) == 1

        # Another replica (a new directory on the same database) asks Slack nothing.
        other = SlackDirectory(client, db)
        assert await other.usergroup_members("S0042") == {"U0042"}
        assert directory_calls(slack) == 1


async def test_events_change_members_without_asking_slack(db: Database) -> None:
    async with SlackStandIn(make_workspace(), latency_ms=0) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        directory = SlackDirectory(client, db, reload_interval=0)
        assert await directory.usergroup_members("S0SRE") == {"U0BOB", "U0CAROL"}
        calls = len(slack.calls)

        assert await directory.apply_event(
            {
                "type": "subteam_members_changed",
                "subteam_id": "S0SRE",
                "added_users": ["U0ALICE"],
                "added_users_count": "1",
                "removed_users": ["U0BOB"],
                "removed_users_count": "1",
            }
        )
        assert await directory.usergroup_members("S0SRE") == {"U0ALICE", "U0CAROL"}
        # Adding someone already there, removing someone never there: no harm.
        await directory.apply_event(
            {"type": "subteam_members_changed", "subteam_id": "S0SRE", "added_users": ["U0ALICE"]}
        )
        assert await directory.usergroup_members("S0SRE") == {"U0ALICE", "U0CAROL"}

        new_group = {"id": "S0NEW", "users": ["U0BOB"], "date_delete": 0}
        assert await directory.apply_event({"type": "subteam_updated", "subteam": new_group})
        assert await directory.usergroup_members("S0NEW") == {"U0BOB"}
        disabled = {"id": "S0SRE", "users": ["U0CAROL"], "date_delete": 1_700_000_000}
        assert await directory.apply_event({"type": "subteam_updated", "subteam": disabled})
        assert await directory.usergroup_members("S0SRE") == frozenset()

        assert not await directory.apply_event({"type": "subteam_updated", "subteam": "S0SRE"})
        assert not await directory.apply_event({"type": "subteam_members_changed"})
        assert not await directory.apply_event({"type": "app_mention"})
        assert len(slack.calls) == calls  # none of it asked Slack

        # A second replica sees the events' result from the table.
        assert await SlackDirectory(client, db).usergroup_members("S0NEW") == {"U0BOB"}


async def test_refresh_stays_within_the_tier_budget(db: Database) -> None:
    async with SlackStandIn(make_workspace(), latency_ms=0) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        directory = SlackDirectory(client, db, refresh_interval=60)
        assert await directory.refresh() is True
        # Within the interval, no replica asks again: one call a minute of Tier 2's 20.
        assert await directory.refresh() is False
        assert await SlackDirectory(client, db, refresh_interval=60).refresh() is False
        assert len(slack.calls_to("usergroups.list")) == 1
        assert await directory.refresh(force=True) is True
        assert len(slack.calls_to("usergroups.list")) == 2


async def test_a_free_plan_has_no_groups_and_says_so(db: Database) -> None:
    workspace = replace(make_workspace(), plan="free")
    async with SlackStandIn(workspace, latency_ms=0) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        directory = SlackDirectory(client, db)
        assert await directory.usergroup_members("S0SRE") == frozenset()
        assert await directory.unavailable() == "plan_upgrade_required"
        assert await SlackDirectory(client, db).usergroup_members("S0SRE") == frozenset()
        assert len(slack.calls_to("usergroups.list")) == 1  # remembered, not asked per click


async def test_slack_down_on_a_cold_start_is_try_again_not_nobody(db: Database) -> None:
    async with SlackStandIn(make_workspace(), latency_ms=0) as slack:
        client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url)
        slack.fail_next("usergroups.list", status=500)
        directory = SlackDirectory(client, db)
        with pytest.raises(TryAgainLater):
            await directory.usergroup_members("S0SRE")
        assert await directory.usergroup_members("S0SRE") == {"U0BOB", "U0CAROL"}


async def test_429_is_retried_after_retry_after_by_slack_sdk(db: Database) -> None:
    async with SlackStandIn(make_workspace(), latency_ms=0) as slack:
        client = with_rate_limit_retries(AsyncWebClient(token=BOT_TOKEN, base_url=slack.api_url))
        slack.fail_next("usergroups.list", status=429, retry_after=1)
        directory = SlackDirectory(client, db)
        assert await directory.usergroup_members("S0SRE") == {"U0BOB", "U0CAROL"}
        first, second = slack.calls_to("usergroups.list")
        assert (first.status, second.status) == (429, 200)
        assert second.at - first.at >= 1.0  # waited Retry-After

        # Any method: a views.open, a users.info.
        slack.fail_next("users.info", status=429, retry_after=1)
        assert (await client.users_info(user="U0BOB"))["user"]["name"] == "bob"

        # The outbox's client sees the 429 itself (it paces channels and keeps the row).
        slack.fail_next("chat.postMessage", status=429, retry_after=1)
        with pytest.raises(SlackApiError) as raised:
            await outbox_client(client).chat_postMessage(channel="C0PAY", text="x")
        assert raised.value.response.status_code == 429
        assert with_rate_limit_retries(client).retry_handlers == client.retry_handlers


@pytest.mark.parametrize("plan", ["free", "pro"])
async def test_check_config_says_when_slack_has_no_user_groups(
    plan: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main
    from sandbox.app.stack import SAMPLE_CONFIG, SANDBOX_WORKSPACE

    async with SlackStandIn(replace(SANDBOX_WORKSPACE, plan=plan), latency_ms=0) as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", SANDBOX_WORKSPACE.bot_token)
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        code = await asyncio.to_thread(main, ["check-config", str(SAMPLE_CONFIG)])
    out = capsys.readouterr().out
    assert code == 0
    note = (
        "Slack: this workspace's plan has no user groups (plan_upgrade_required), so teams, "
        "admins and approvers are only the members listed in this file; 3 user group(s) "
        "named here match nobody."
    )
    assert (note in out) is (plan == "free")


async def test_on_a_free_plan_role_checks_use_the_catalogs_listed_members(db: Database) -> None:
    from catalog import Catalog
    from catalog.load import load_platform_model
    from features.approvals.people import person_of
    from kernel.ids import SlackUserId
    from sandbox.app.stack import SAMPLE_CONFIG, SANDBOX_WORKSPACE

    catalog = Catalog(load_platform_model(SAMPLE_CONFIG))
    for plan, bob_teams in (("free", ()), ("pro", ("sre",))):
        async with SlackStandIn(replace(SANDBOX_WORKSPACE, plan=plan), latency_ms=0) as slack:
            client = AsyncWebClient(token=SANDBOX_WORKSPACE.bot_token, base_url=slack.api_url)
            directory = SlackDirectory(client, db)
            await directory.refresh(force=True)
            alice = await person_of(catalog, directory, SlackUserId("U01ALICE"), usergroups=())
            bob = await person_of(catalog, directory, SlackUserId("U02BOB"), usergroups=("S02SRE",))
            dave = await person_of(catalog, directory, SlackUserId("U04DAVE"), usergroups=())
        assert alice.teams == ("payments",)  # listed by id in platform.yml
        assert dave.platform_admin  # listed in platform.admins
        assert bob.teams == bob_teams  # only through the S02SRE group
        assert bob.usergroups == (frozenset() if plan == "free" else {"S02SRE"})
