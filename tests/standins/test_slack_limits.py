"""The Slack stand-in's method tiers, latency and free plan, seen through slack_sdk.

Pinned to https://docs.slack.dev/apis/web-api/rate-limits (tiers per minute, 429 +
Retry-After) and each method's reference page (its tier); see slack_limits.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.standins.slack_api import SlackStandIn
from sandbox.standins.slack_client import ACK_DEADLINE_S, SlackSender
from sandbox.standins.slack_limits import METHOD_TIERS, PER_MINUTE, MethodLimits
from tests.standins.test_slack_standin import BOT_TOKEN, FakeClock, make_workspace


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def standin(clock: FakeClock) -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn(make_workspace(), clock=clock) as running:
        yield running


@pytest.fixture
def slack(standin: SlackStandIn) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=standin.api_url)


async def _status(call: object) -> tuple[int, str | None]:
    try:
        await call  # type: ignore[misc]
    except SlackApiError as refused:
        return refused.response.status_code, refused.response.headers.get("Retry-After")
    return 200, None


def test_each_method_has_the_tier_its_reference_page_shows() -> None:
    assert METHOD_TIERS["usergroups.users.list"] == 2
    assert METHOD_TIERS["usergroups.list"] == 2
    assert METHOD_TIERS["apps.connections.open"] == 1
    assert METHOD_TIERS["chat.update"] == 3
    assert METHOD_TIERS["conversations.info"] == 3
    assert METHOD_TIERS["users.lookupByEmail"] == 3
    assert METHOD_TIERS["users.info"] == 4
    assert METHOD_TIERS["views.open"] == 4
    assert METHOD_TIERS["chat.postMessage"] == "special"
    assert PER_MINUTE == {1: 1.0, 2: 20.0, 3: 50.0, 4: 100.0}


async def test_tier_2_allows_20_a_minute_then_429_with_retry_after(
    slack: AsyncWebClient, standin: SlackStandIn, clock: FakeClock
) -> None:
    outcomes = [await _status(slack.usergroups_users_list(usergroup="S0SRE")) for _ in range(21)]
    assert [status for status, _ in outcomes] == [200] * 20 + [429]
    refused = standin.calls_to("usergroups.users.list")[-1]
    assert refused.response == {"ok": False, "error": "ratelimited"}
    assert outcomes[-1][1] == "3"  # one call every 3 s at 20 a minute
    # Per method: the other Tier 2 method has its own budget.
    assert (await _status(slack.usergroups_list()))[0] == 200
    clock.advance(3.0)
    assert (await _status(slack.usergroups_users_list(usergroup="S0SRE")))[0] == 200
    assert (await _status(slack.usergroups_users_list(usergroup="S0SRE")))[0] == 429


@pytest.mark.parametrize(
    ("method", "per_minute"),
    [("conversations.info", 50), ("users.info", 100), ("apps.connections.open", 1)],
)
async def test_tiers_1_3_and_4(
    standin: SlackStandIn, clock: FakeClock, method: str, per_minute: int
) -> None:
    token = standin.workspace.app_token if method == "apps.connections.open" else BOT_TOKEN
    client = AsyncWebClient(token=token, base_url=standin.api_url)
    args = {"conversations.info": {"channel": "C0PAY"}, "users.info": {"user": "U0BOB"}}
    statuses = []
    for _ in range(per_minute + 1):
        try:
            await client.api_call(method, params=args.get(method, {}))
            statuses.append(200)
        except SlackApiError as refused:
            statuses.append(refused.response.status_code)
    assert statuses == [200] * per_minute + [429]
    clock.advance(60.0 / per_minute)
    await client.api_call(method, params=args.get(method, {}))


async def test_special_methods_are_not_metered_by_a_tier(
    slack: AsyncWebClient, standin: SlackStandIn
) -> None:
    for _ in range(120):
        await slack.auth_test()
    assert standin.rate_limited_count == 0


def test_scale_multiplies_budgets() -> None:
    limits = MethodLimits(scale=0.1)
    assert limits.take("usergroups.list", 0.0) is None
    assert limits.take("usergroups.list", 0.0) is None
    assert limits.take("usergroups.list", 0.0) == 30  # 2 a minute: one every 30 s
    assert limits.refused == {"usergroups.list": 1}


async def test_free_plan_has_no_user_groups() -> None:
    workspace = replace(make_workspace(), plan="free")
    async with SlackStandIn(workspace) as standin:
        slack = AsyncWebClient(token=BOT_TOKEN, base_url=standin.api_url)
        for call in (slack.usergroups_list(), slack.usergroups_users_list(usergroup="S0SRE")):
            with pytest.raises(SlackApiError) as raised:
                await call
            assert raised.value.response.status_code == 200
            assert raised.value.response["error"] == "plan_upgrade_required"
        assert (await slack.users_info(user="U0BOB"))["ok"]


async def test_latency_from_the_constructor_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with SlackStandIn(make_workspace(), latency_ms=150) as standin:
        slack = AsyncWebClient(token=BOT_TOKEN, base_url=standin.api_url)
        started = time.perf_counter()
        await slack.auth_test()
        assert time.perf_counter() - started >= 0.15
    monkeypatch.setenv("SANDBOX_SLACK_LATENCY_MS", "120")
    assert SlackStandIn(make_workspace()).latency_s == pytest.approx(0.12)
    monkeypatch.setenv("SANDBOX_SLACK_LATENCY_MS", "nonsense")
    assert SlackStandIn(make_workspace()).latency_s == 0
    monkeypatch.delenv("SANDBOX_SLACK_LATENCY_MS")
    assert SlackStandIn(make_workspace()).latency_s == 0


async def test_the_sender_notes_answers_later_than_slacks_three_seconds() -> None:
    delays = iter([0.0, ACK_DEADLINE_S + 0.1])

    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(next(delays))
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        async with SlackSender(
            events_url=f"http://{host}:{port}/slack/events",
            signing_secret="s3cr3t",
            workspace=make_workspace(),
        ) as sender:
            await sender.slash_command("help", user="alice", channel="payments")
            assert sender.late_acks == []
            await sender.slash_command("help", user="alice", channel="payments")
            (late,) = sender.late_acks
            assert late.seconds >= ACK_DEADLINE_S and len(sender.acks) == 2
    finally:
        await runner.cleanup()
