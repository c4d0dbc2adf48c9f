"""The Slack stand-in behaves as Slack documents, seen through the real slack_sdk clients.

If these pass, a bot test that runs against the stand-in learns what Slack would say:
the same error codes and HTTP statuses, the same Block Kit refusals, the same limits.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from sandbox.standins.slack_api import (
    SlackChannel,
    SlackStandIn,
    SlackUser,
    SlackUserGroup,
    Workspace,
    validate_message_blocks,
    validate_options_response,
    validate_view,
)
from sandbox.standins.slack_client import SlackSender
from sandbox.standins.slack_socket import SocketModeError

BOT_TOKEN = "xoxb-1-standin-bot"
APP_TOKEN = "xapp-1-standin-app"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class FakeClock:
    """A clock the test moves by hand, so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_workspace() -> Workspace:
    return Workspace(
        team_id="T0ACME",
        team_name="Acme",
        bot_token=BOT_TOKEN,
        app_token=APP_TOKEN,
        bot_user_id="U0BOT",
        users=(
            SlackUser("U0BOT", "platform-bot", "Platform Bot", is_bot=True),
            SlackUser("U0ALICE", "alice", "Alice Archer", "alice@acme.test"),
            SlackUser("U0BOB", "bob", "Bob Baker", "bob@acme.test", tz="Europe/Berlin"),
            SlackUser("U0CAROL", "carol", "Carol Chen", "carol@acme.test"),
        ),
        usergroups=(SlackUserGroup("S0SRE", "sre", "SRE", ("U0BOB", "U0CAROL")),),
        channels=(
            SlackChannel("C0PAY", "payments"),
            SlackChannel("C0GEN", "general"),
            SlackChannel("C0OPS", "ops", is_private=True, members=("U0BOT", "U0CAROL")),
            SlackChannel("C0RND", "random", bot_is_member=False),
        ),
    )


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(action_id: str, text: str = "Approve", value: str = "v") -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": {"type": "plain_text", "text": text},
        "value": value,
    }


def modal(blocks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": "new_service",
        "title": {"type": "plain_text", "text": "New service"},
        "submit": {"type": "plain_text", "text": "Create"},
        "blocks": blocks,
        **extra,
    }


def option(length: int = 5, value: str = "v") -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": "o" * length}, "value": value}


def static_select(count: int, action_id: str = "s") -> dict[str, Any]:
    options = [option(value=f"v{i}") for i in range(count)]
    return {"type": "static_select", "action_id": action_id, "options": options}


def grouped_select(*, groups: int = 1, per_group: int = 1) -> dict[str, Any]:
    group = {
        "label": {"type": "plain_text", "text": "g"},
        "options": [option(value=f"v{i}") for i in range(per_group)],
    }
    return {"type": "static_select", "action_id": "s", "option_groups": [group] * groups}


def external_select(action_id: str = "team", **extra: Any) -> dict[str, Any]:
    return {"type": "external_select", "action_id": action_id, **extra}


def input_block(element: dict[str, Any], block_id: str = "b") -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": "Label"},
        "element": element,
    }


NAME_INPUT = {
    "type": "input",
    "block_id": "name",
    "label": {"type": "plain_text", "text": "Name"},
    "element": {"type": "plain_text_input", "action_id": "value"},
}


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeBotEndpoint:
    """Stands where the bot's /slack/events would be: records, answers as told."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    reply: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(await request.read(), dict(request.headers)))
        return web.Response(text=self.reply, content_type="application/json")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def standin(clock: FakeClock) -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn(make_workspace(), clock=clock) as running:
        yield running


@pytest.fixture
def slack(standin: SlackStandIn) -> AsyncWebClient:
    """The real slack_sdk client, pointed at the stand-in (a session per call, closed)."""
    return AsyncWebClient(token=BOT_TOKEN, base_url=standin.api_url)


@pytest.fixture
async def bot() -> AsyncIterator[FakeBotEndpoint]:
    endpoint = FakeBotEndpoint()
    app = web.Application()
    app.router.add_post("/slack/events", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    endpoint.url = f"http://{host}:{port}/slack/events"
    yield endpoint
    await runner.cleanup()


@pytest.fixture
async def sender(standin: SlackStandIn, bot: FakeBotEndpoint) -> AsyncIterator[SlackSender]:
    async with SlackSender(
        events_url=bot.url,
        signing_secret=SIGNING_SECRET,
        workspace=standin.workspace,
        standin=standin,
    ) as playing_slack:
        yield playing_slack


async def refusal(call: Any) -> SlackApiError:
    """The SlackApiError an awaited slack_sdk call raises."""
    with pytest.raises(SlackApiError) as raised:
        await call
    return raised.value


# --- messages -----------------------------------------------------------------------------


async def test_post_reply_in_thread_update_and_permalink(
    slack: AsyncWebClient, standin: SlackStandIn
) -> None:
    posted = await slack.chat_postMessage(
        channel="#payments", text="deploying", blocks=[section("Deploying *checkout*")]
    )
    assert posted["channel"] == "C0PAY"
    assert posted["message"]["bot_id"] == standin.workspace.bot_id
    reply = await slack.chat_postMessage(channel="C0PAY", thread_ts=posted["ts"], text="step 1")
    assert float(reply["ts"]) > float(posted["ts"])

    updated = await slack.chat_update(
        channel="C0PAY", ts=posted["ts"], text="deployed", blocks=[section("Deployed")]
    )
    assert updated["text"] == "deployed"

    root = standin.message("#payments", posted["ts"])
    assert (root.text, root.edits) == ("deployed", 1)
    assert root.blocks[0]["text"]["text"] == "Deployed"
    assert root.blocks[0]["block_id"], "Slack gives every block an id"
    assert [m.ts for m in standin.thread("C0PAY", posted["ts"])] == [posted["ts"], reply["ts"]]

    link = await slack.chat_getPermalink(channel="C0PAY", message_ts=reply["ts"])
    expected = f"https://acme.slack.com/archives/C0PAY/p{reply['ts'].replace('.', '')}"
    assert link["permalink"] == f"{expected}?thread_ts={posted['ts']}&cid=C0PAY"

    nested = await refusal(slack.chat_postMessage(channel="C0PAY", thread_ts=reply["ts"], text="x"))
    assert nested.response["error"] == "invalid_thread_ts"
    assert [call.method for call in standin.calls][-1] == "chat.postMessage"
    assert not standin.calls[-1].ok


async def test_form_encoded_call_with_blocks_as_a_json_string(
    standin: SlackStandIn, slack: AsyncWebClient
) -> None:
    blocks = json.dumps([section("from a form")])
    await slack.api_call("chat.postMessage", data={"channel": "C0GEN", "blocks": blocks})
    assert standin.messages["C0GEN"][0].blocks[0]["text"]["text"] == "from a form"
    broken = await refusal(
        slack.api_call("chat.postMessage", data={"channel": "C0GEN", "blocks": "[{"})
    )
    assert broken.response["error"] == "invalid_blocks_format"


@pytest.mark.parametrize(
    ("token", "method", "error"),
    [
        ("xoxb-never-issued", "auth.test", "invalid_auth"),
        (None, "auth.test", "not_authed"),
        (APP_TOKEN, "chat.postMessage", "not_allowed_token_type"),
        (BOT_TOKEN, "apps.connections.open", "not_allowed_token_type"),
        (BOT_TOKEN, "no.such.method", "unknown_method"),
    ],
)
async def test_token_and_method_refusals_are_http_200(
    standin: SlackStandIn, token: str | None, method: str, error: str
) -> None:
    client = AsyncWebClient(token=token, base_url=standin.api_url)
    refused = await refusal(client.api_call(method, json={"channel": "C0GEN", "text": "hi"}))
    assert refused.response.status_code == 200
    assert refused.response["error"] == error


async def test_auth_test_names_the_bot(slack: AsyncWebClient) -> None:
    me = await slack.auth_test()
    assert (me["user_id"], me["team_id"], me["url"]) == (
        "U0BOT",
        "T0ACME",
        "https://acme.slack.com/",
    )


async def test_message_refusals(slack: AsyncWebClient, standin: SlackStandIn) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"channel": "#nope", "text": "x"}, "channel_not_found"),
        ({"channel": "#random", "text": "x"}, "not_in_channel"),
        ({"channel": "#payments"}, "no_text"),
        ({"channel": "#payments", "text": "x" * 40_001}, "msg_too_long"),
    ]
    for args, error in cases:
        refused = await refusal(slack.api_call("chat.postMessage", json=args))
        assert refused.response["error"] == error
    missing = await refusal(slack.chat_update(channel="C0PAY", ts="1.000001", text="x"))
    assert missing.response["error"] == "message_not_found"
    outsider = await refusal(slack.chat_postEphemeral(channel="#ops", user="U0ALICE", text="x"))
    assert outsider.response["error"] == "user_not_in_channel"
    human = standin.add_user_message("#payments", user="alice", text="hello")
    refused = await refusal(slack.chat_update(channel="C0PAY", ts=human.ts, text="edited"))
    assert refused.response["error"] == "cant_update_message"


async def test_ephemeral_and_dm(slack: AsyncWebClient, standin: SlackStandIn) -> None:
    sent = await slack.chat_postEphemeral(channel="#ops", user="U0CAROL", text="only you")
    assert sent["message_ts"]
    assert [(e.user, e.text, e.source) for e in standin.ephemerals] == [
        ("U0CAROL", "only you", "chat.postEphemeral")
    ]
    dm = await slack.chat_postMessage(channel="U0BOB", text="please approve")
    info = await slack.conversations_info(channel=dm["channel"])
    assert info["channel"]["is_im"] and info["channel"]["user"] == "U0BOB"


# --- Block Kit ----------------------------------------------------------------------------


async def test_51_blocks_are_refused_as_slack_refuses_them(slack: AsyncWebClient) -> None:
    refused = await refusal(
        slack.chat_postMessage(channel="C0PAY", text="x", blocks=[section("b")] * 51)
    )
    assert refused.response["error"] == "invalid_blocks"
    assert refused.response["response_metadata"]["messages"] == [
        "[ERROR] no more than 50 items allowed [json-pointer:/blocks]"
    ]
    await slack.chat_postMessage(channel="C0PAY", text="x", blocks=[section("b")] * 50)


async def test_a_3001_character_section_is_refused(slack: AsyncWebClient) -> None:
    refused = await refusal(
        slack.chat_postMessage(channel="C0PAY", text="x", blocks=[section("y" * 3001)])
    )
    assert refused.response["error"] == "invalid_blocks"
    assert refused.response["response_metadata"]["messages"] == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/0/text]",
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
    ]


@pytest.mark.parametrize(
    ("blocks", "problem"),
    [
        ([{"type": "sections"}], "unsupported type: sections [json-pointer:/blocks/0/type]"),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}],
            "must be a valid enum value [json-pointer:/blocks/0/text/type]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [section("")],
            "must be more than 0 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
        ),
        (
            [{"type": "actions", "elements": [button("a", text="b" * 76)]}],
            "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
        ),
        (
            [{"type": "actions", "elements": [button("a", value="v" * 2001)]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/elements/0/value]",
        ),
        (
            [{"type": "actions", "elements": [button(f"a{i}") for i in range(26)]}],
            "no more than 25 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [{"type": "actions", "elements": [button("same"), button("same")]}],
            "duplicate action_id: same [json-pointer:/blocks/0/elements/1/action_id]",
        ),
        (
            [section("a", block_id="b1"), section("b", block_id="b1")],
            "duplicate block_id: b1 [json-pointer:/blocks/1/block_id]",
        ),
        (
            [section("a", block_id="x" * 256)],
            "must be less than 256 characters [json-pointer:/blocks/0/block_id]",
        ),
        (
            [{"type": "actions", "elements": [{**button("a"), "action_id": "x" * 256}]}],
            "must be less than 256 characters [json-pointer:/blocks/0/elements/0/action_id]",
        ),
        (
            [{"type": "actions", "elements": [{"type": "plain_text_input", "action_id": "t"}]}],
            "unsupported element: plain_text_input [json-pointer:/blocks/0/elements/0]",
        ),
        (
            [{"type": "input", "label": {"type": "plain_text", "text": "l" * 2001}, "element": {}}],
            "must be less than 2001 characters [json-pointer:/blocks/0/label/text]",
        ),
        (
            [{"type": "actions", "elements": [static_select(101)]}],
            "no more than 100 items allowed [json-pointer:/blocks/0/elements/0/options]",
        ),
        (
            [{"type": "actions", "elements": [grouped_select(groups=101)]}],
            "no more than 100 items allowed [json-pointer:/blocks/0/elements/0/option_groups]",
        ),
        (
            [{"type": "actions", "elements": [grouped_select(per_group=101)]}],
            "no more than 100 items allowed"
            " [json-pointer:/blocks/0/elements/0/option_groups/0/options]",
        ),
        (
            [{"type": "actions", "elements": [{"type": "static_select", "action_id": "s"}]}],
            "must provide either options or option_groups [json-pointer:/blocks/0/elements/0]",
        ),
        (
            [{"type": "actions", "elements": [{**static_select(1), "type": "external_select"}]}],
            "invalid additional property: options [json-pointer:/blocks/0/elements/0]",
        ),
        (
            [{"type": "actions", "elements": [{**static_select(1), "initial_option": option(76)}]}],
            "must be less than 76 characters"
            " [json-pointer:/blocks/0/elements/0/initial_option/text/text]",
        ),
        (
            [input_block({"type": "plain_text_input", "action_id": "v", "max_length": 3001})],
            "must be between 1 and 3000 [json-pointer:/blocks/0/element/max_length]",
        ),
        (
            [{**input_block(static_select(2)), "dispatch_action": "yes"}],
            "must be a boolean [json-pointer:/blocks/0/dispatch_action]",
        ),
    ],
)
def test_block_kit_limits(blocks: list[dict[str, Any]], problem: str) -> None:
    assert problem in validate_message_blocks(blocks)


def test_valid_blocks_pass() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Rollback checkout"}},
        section("*prod* to revision 41", accessory=button("details")),
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "asked by <@U0ALICE>"}]},
        {"type": "actions", "elements": [button("approve"), button("deny", "Deny")]},
        {"type": "actions", "elements": [button("approve")]},  # unique per block, as documented
        {"type": "image", "image_url": "https://grafana.test/x.png", "alt_text": "p99"},
        {"type": "rich_text", "elements": []},
    ]
    assert validate_message_blocks(blocks) == []


# --- modals -------------------------------------------------------------------------------


async def test_views_open_uses_a_trigger_once_and_only_while_fresh(
    slack: AsyncWebClient, standin: SlackStandIn, clock: FakeClock
) -> None:
    trigger = standin.issue_trigger_id(user="U0ALICE")
    opened = await slack.views_open(trigger_id=trigger, view=modal([NAME_INPUT]))
    view_id = opened["view"]["id"]
    assert standin.views[view_id].user == "U0ALICE"
    assert opened["view"]["callback_id"] == "new_service"

    again = await refusal(slack.views_open(trigger_id=trigger, view=modal([NAME_INPUT])))
    assert again.response["error"] == "exchanged_trigger_id"

    stale = standin.issue_trigger_id()
    clock.advance(3.01)
    late = await refusal(slack.views_open(trigger_id=stale, view=modal([NAME_INPUT])))
    assert late.response["error"] == "expired_trigger_id"

    unknown = await refusal(slack.views_open(trigger_id="1.2.abc", view=modal([NAME_INPUT])))
    assert unknown.response["error"] == "invalid_trigger_id"


async def test_view_limits(slack: AsyncWebClient, standin: SlackStandIn) -> None:
    too_many = await refusal(
        slack.views_open(trigger_id=standin.issue_trigger_id(), view=modal([section("b")] * 101))
    )
    assert too_many.response["error"] == "invalid_arguments"
    assert too_many.response["response_metadata"]["messages"] == [
        "[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]"
    ]
    problems = validate_view(
        modal(
            [NAME_INPUT],
            title={"type": "plain_text", "text": "t" * 25},
            submit=None,
            private_metadata="m" * 3001,
            callback_id="c" * 256,
        )
    )
    assert problems == [
        "must be less than 25 characters [json-pointer:/view/title/text]",
        "must be less than 256 characters [json-pointer:/view/callback_id]",
        "must be less than 3001 characters [json-pointer:/view/private_metadata]",
        "must define `submit` to use an `input` block in modals"
        " [json-pointer:/view/blocks/0/input]",
    ]
    assert validate_view(modal([section("b")] * 100)) == []


async def test_views_update_and_push(slack: AsyncWebClient, standin: SlackStandIn) -> None:
    opened = await slack.views_open(
        trigger_id=standin.issue_trigger_id(user="U0ALICE"), view=modal([NAME_INPUT])
    )
    root = opened["view"]
    conflict = await refusal(
        slack.views_update(view_id=root["id"], hash="stale", view=modal([section("x")]))
    )
    assert conflict.response["error"] == "hash_conflict"
    updated = await slack.views_update(
        view_id=root["id"], hash=root["hash"], view=modal([section("loading done")])
    )
    assert updated["view"]["blocks"][0]["text"]["text"] == "loading done"
    assert standin.views[root["id"]].updates == 1

    for _ in range(2):
        trigger = standin.issue_trigger_id(user="U0ALICE", view_id=root["id"])
        await slack.views_push(trigger_id=trigger, view=modal([section("more")]))
    assert len(standin.view_stack(root["id"])) == 3
    trigger = standin.issue_trigger_id(user="U0ALICE", view_id=root["id"])
    full = await refusal(slack.views_push(trigger_id=trigger, view=modal([section("more")])))
    assert full.response["error"] == "push_limit_reached"
    missing = await refusal(slack.views_update(view_id="VNOPE", view=modal([section("x")])))
    assert missing.response["error"] == "not_found"


# --- rate limits and injected failures ----------------------------------------------------


async def test_429_with_retry_after_past_the_channel_burst(
    slack: AsyncWebClient, standin: SlackStandIn, clock: FakeClock
) -> None:
    outcomes: list[int] = []
    for i in range(10):
        try:
            await slack.chat_postMessage(channel="C0PAY", text=f"alert {i}")
            outcomes.append(200)
        except SlackApiError as refused:
            assert refused.response["error"] == "ratelimited"
            assert int(refused.response.headers["Retry-After"]) >= 1
            outcomes.append(refused.response.status_code)
    assert outcomes == [200] * 3 + [429] * 7
    assert len(standin.messages["C0PAY"]) == 3
    assert standin.rate_limited_count == 7
    assert len(standin.calls_to("chat.postMessage")) == 10

    await slack.chat_postMessage(channel="C0GEN", text="another channel is unaffected")
    clock.advance(1.0)
    await slack.chat_postMessage(channel="C0PAY", text="one a second again")


async def test_fail_next(slack: AsyncWebClient, standin: SlackStandIn) -> None:
    standin.fail_next("chat.postMessage", status=500)
    standin.fail_next("chat.postMessage", status=429, retry_after=2)
    standin.fail_next("chat.postMessage", error="fatal_error", times=2)
    broken = await refusal(slack.chat_postMessage(channel="C0PAY", text="x"))
    assert broken.response.status_code == 500
    limited = await refusal(slack.chat_postMessage(channel="C0PAY", text="x"))
    assert (limited.response.status_code, limited.response.headers["Retry-After"]) == (429, "2")
    for _ in range(2):
        fatal = await refusal(slack.chat_postMessage(channel="C0PAY", text="x"))
        assert (fatal.response.status_code, fatal.response["error"]) == (200, "fatal_error")
    await slack.chat_postMessage(channel="C0PAY", text="back to normal")
    assert len(standin.messages["C0PAY"]) == 1


async def test_wait_for_a_call_without_sleeping(
    slack: AsyncWebClient, standin: SlackStandIn
) -> None:
    async def later() -> None:
        await asyncio.sleep(0.01)
        await slack.chat_postMessage(channel="C0GEN", text="done")

    task = asyncio.create_task(later())
    call = await standin.wait_for("chat.postMessage", timeout=2)
    assert call.args["text"] == "done" and call.ok
    await task
    with pytest.raises(TimeoutError):
        await standin.wait_for(lambda c: c.method == "chat.update", timeout=0.05)


# --- directory ----------------------------------------------------------------------------


async def test_users_and_groups(slack: AsyncWebClient) -> None:
    members = await slack.usergroups_users_list(usergroup="S0SRE")
    assert members["users"] == ["U0BOB", "U0CAROL"]
    groups = await slack.usergroups_list(include_users=True)
    assert groups["usergroups"][0]["handle"] == "sre"
    assert groups["usergroups"][0]["users"] == ["U0BOB", "U0CAROL"]
    bob = await slack.users_lookupByEmail(email="BOB@acme.test")
    assert (bob["user"]["id"], bob["user"]["tz"]) == ("U0BOB", "Europe/Berlin")
    info = await slack.users_info(user="U0ALICE")
    assert info["user"]["profile"]["email"] == "alice@acme.test"
    channel = await slack.conversations_info(channel="C0OPS")
    assert channel["channel"]["is_private"] is True

    assert (await refusal(slack.usergroups_users_list(usergroup="S0NOPE"))).response[
        "error"
    ] == "no_such_subteam"
    assert (await refusal(slack.users_lookupByEmail(email="eve@evil.test"))).response[
        "error"
    ] == "users_not_found"
    assert (await refusal(slack.users_info(user="U0NOPE"))).response["error"] == "user_not_found"
    assert (await refusal(slack.conversations_info(channel="C0NOPE"))).response[
        "error"
    ] == "channel_not_found"


# --- response_url -------------------------------------------------------------------------


async def test_response_url_records_and_wears_out(standin: SlackStandIn, clock: FakeClock) -> None:
    url = standin.new_response_url(channel="#payments", user="U0ALICE")
    hook = AsyncWebhookClient(url)
    first = await hook.send(text="working on it", response_type="ephemeral")
    assert first.status_code == 200
    await hook.send(text="rolled back", response_type="in_channel")
    for _ in range(3):
        assert (await hook.send(text="more")).status_code == 200
    worn = await hook.send(text="a sixth time")
    assert (worn.status_code, json.loads(worn.body)["error"]) == (404, "used_url")

    assert [(e.user, e.text) for e in standin.ephemerals][:1] == [("U0ALICE", "working on it")]
    assert [m.text for m in standin.messages["C0PAY"]] == ["rolled back"]
    assert len(standin.calls_to("response_url")) == 6

    old = AsyncWebhookClient(standin.new_response_url(channel="C0PAY", user="U0ALICE"))
    clock.advance(30 * 60 + 1)
    expired = await old.send(text="too late")
    assert (expired.status_code, json.loads(expired.body)["error"]) == (404, "expired_url")

    fresh = AsyncWebhookClient(standin.new_response_url(channel="C0PAY", user="U0ALICE"))
    bad = await fresh.send(text="x", blocks=[section("y" * 3001)])
    assert (bad.status_code, json.loads(bad.body)["error"]) == (400, "invalid_blocks")


async def test_response_url_replaces_and_deletes_the_original(
    slack: AsyncWebClient, standin: SlackStandIn
) -> None:
    card = await slack.chat_postMessage(channel="C0PAY", text="approve?")
    url = standin.new_response_url(channel="C0PAY", user="U0BOB", message_ts=card["ts"])
    hook = AsyncWebhookClient(url)
    await hook.send(text="approved by bob", replace_original=True)
    assert standin.message("C0PAY", card["ts"]).text == "approved by bob"
    await hook.send(delete_original=True)
    assert standin.messages["C0PAY"] == []


# --- Socket Mode --------------------------------------------------------------------------


async def test_socket_mode_client_connects_receives_and_acks(standin: SlackStandIn) -> None:
    client = SocketModeClient(
        app_token=APP_TOKEN,
        web_client=AsyncWebClient(base_url=standin.api_url),
        auto_reconnect_enabled=False,
    )

    async def ack(socket_client: SocketModeClient, request: SocketModeRequest) -> None:
        answer = {"text": f"got {request.payload['text']}"}
        response = SocketModeResponse(envelope_id=request.envelope_id, payload=answer)
        await socket_client.send_socket_mode_response(response)

    client.socket_mode_request_listeners.append(ack)
    with pytest.raises(SocketModeError):
        await standin.socket_deliver(type="slash_commands", payload={"text": "help"})
    await client.connect()
    try:
        await standin.wait_for_socket_connection(timeout=2)
        acked = await standin.socket_deliver(type="slash_commands", payload={"text": "help"})
        envelope = standin.socket.envelopes[-1]
        assert acked == {"envelope_id": envelope["envelope_id"], "payload": {"text": "got help"}}
        assert envelope["accepts_response_payload"] is True
        assert standin.calls_to("apps.connections.open")[0].ok
    finally:
        await client.close()


async def test_socket_deliver_times_out_without_an_ack(standin: SlackStandIn) -> None:
    client = SocketModeClient(
        app_token=APP_TOKEN,
        web_client=AsyncWebClient(base_url=standin.api_url),
        auto_reconnect_enabled=False,
    )
    await client.connect()
    try:
        await standin.wait_for_socket_connection(timeout=2)
        with pytest.raises(SocketModeError, match="did not acknowledge"):
            await standin.socket_deliver(type="events_api", payload={}, timeout=0.05)
    finally:
        await client.close()


# --- SlackSender --------------------------------------------------------------------------


def test_sign_matches_slacks_recipe(sender: SlackSender) -> None:
    body = b"token=abc&team_id=T0ACME&text=rollback+checkout+prod"
    expected = hmac.new(
        SIGNING_SECRET.encode(), b"v0:1531420618:" + body, hashlib.sha256
    ).hexdigest()
    assert sender.sign(body, 1531420618) == {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": f"v0={expected}",
    }


async def test_slash_command_is_form_encoded_and_signed_as_slack_does(
    sender: SlackSender, bot: FakeBotEndpoint, standin: SlackStandIn, slack: AsyncWebClient
) -> None:
    answer = await sender.slash_command("rollback checkout prod", user="alice", channel="#payments")
    assert answer.status == 200
    sent = bot.received[0]
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(sent.body, sent.headers)

    fields = {key: values[0] for key, values in parse_qs(sent.body.decode()).items()}
    assert fields["command"] == "/platform"
    assert fields["text"] == "rollback checkout prod"
    assert (fields["user_id"], fields["user_name"]) == ("U0ALICE", "alice")
    assert (fields["channel_id"], fields["channel_name"]) == ("C0PAY", "payments")
    assert (fields["team_id"], fields["team_domain"]) == ("T0ACME", "acme")
    assert fields["api_app_id"] == standin.workspace.app_id
    assert fields["response_url"].startswith(standin.base_url)
    opened = await slack.views_open(trigger_id=fields["trigger_id"], view=modal([NAME_INPUT]))
    assert standin.views[opened["view"]["id"]].user == "U0ALICE"


async def test_stale_or_forged_requests_fail_verification(
    sender: SlackSender, bot: FakeBotEndpoint
) -> None:
    await sender.slash_command("x", user="bob", channel="C0GEN", timestamp=int(time.time()) - 360)
    await sender.slash_command("x", user="bob", channel="C0GEN", signature="v0=" + "0" * 64)
    await sender.raw(b"payload=%7B%7D", content_type="application/x-www-form-urlencoded")
    verifier = SignatureVerifier(SIGNING_SECRET)
    assert [verifier.is_valid_request(r.body, r.headers) for r in bot.received] == [
        False,
        False,
        True,
    ]


async def test_block_actions_carry_the_message_and_a_working_response_url(
    sender: SlackSender, bot: FakeBotEndpoint, standin: SlackStandIn, slack: AsyncWebClient
) -> None:
    card = await slack.chat_postMessage(
        channel="C0PAY",
        text="Rollback checkout in prod?",
        blocks=[
            section("Rollback *checkout* in *prod*?"),
            {
                "type": "actions",
                "block_id": "approval",
                "elements": [button("approve", value="run-7"), button("deny", "Deny")],
            },
        ],
    )
    await sender.block_actions(
        user="bob", action_id="approve", channel="C0PAY", message_ts=card["ts"]
    )
    sent = bot.received[0]
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(sent.body, sent.headers)
    payload = json.loads(parse_qs(sent.body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U0BOB"
    assert payload["container"] == {
        "type": "message",
        "message_ts": card["ts"],
        "channel_id": "C0PAY",
        "is_ephemeral": False,
    }
    assert payload["message"]["blocks"][1]["block_id"] == "approval"
    [action] = payload["actions"]
    assert (action["action_id"], action["block_id"], action["value"]) == (
        "approve",
        "approval",
        "run-7",
    )
    done = await AsyncWebhookClient(payload["response_url"]).send(
        text="Approved by bob", replace_original=True
    )
    assert done.status_code == 200
    assert standin.message("C0PAY", card["ts"]).text == "Approved by bob"

    with pytest.raises(LookupError):
        await sender.block_actions(
            user="bob", action_id="no-such-button", channel="C0PAY", message_ts=card["ts"]
        )


async def test_view_submission_closes_the_modal_on_an_empty_ack(
    sender: SlackSender, bot: FakeBotEndpoint, standin: SlackStandIn, slack: AsyncWebClient
) -> None:
    trigger = standin.issue_trigger_id(user="U0ALICE")
    view_id = (await slack.views_open(trigger_id=trigger, view=modal([NAME_INPUT])))["view"]["id"]

    bot.reply = json.dumps({"response_action": "errors", "errors": {"name": "taken"}})
    await sender.view_submission(user="alice", view_id=view_id, values={"name": {"value": "x"}})
    assert view_id in standin.views, "errors keep the modal open"

    bot.reply = ""
    await sender.view_submission(user="alice", view_id=view_id, values={"name": {"value": "ok"}})
    assert view_id not in standin.views

    payload = json.loads(parse_qs(bot.received[-1].body.decode())["payload"][0])
    assert payload["type"] == "view_submission"
    assert payload["view"]["callback_id"] == "new_service"
    assert payload["view"]["state"]["values"] == {
        "name": {"value": {"type": "plain_text_input", "value": "ok"}}
    }


async def test_event_callback_and_its_retries(sender: SlackSender, bot: FakeBotEndpoint) -> None:
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0BOT> help", "channel": "C0GEN"}
    await sender.event_callback(event, event_id="Ev01")
    await sender.event_callback(event, event_id="Ev01", retry_num=1, retry_reason="http_timeout")
    first, retry = bot.received
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(first.body, first.headers)
    envelope = json.loads(first.body)
    assert (envelope["type"], envelope["event_id"], envelope["event"]) == (
        "event_callback",
        "Ev01",
        event,
    )
    assert "X-Slack-Retry-Num" not in first.headers
    assert (retry.headers["X-Slack-Retry-Num"], retry.headers["X-Slack-Retry-Reason"]) == (
        "1",
        "http_timeout",
    )
    assert json.loads(retry.body)["event_id"] == "Ev01"


async def test_sender_in_socket_mode_returns_the_ack(standin: SlackStandIn) -> None:
    client = SocketModeClient(
        app_token=APP_TOKEN,
        web_client=AsyncWebClient(base_url=standin.api_url),
        auto_reconnect_enabled=False,
    )

    async def ack(socket_client: SocketModeClient, request: SocketModeRequest) -> None:
        payload = {
            "response_type": "ephemeral",
            "text": f"{request.type}: {request.payload['text']}",
        }
        response = SocketModeResponse(envelope_id=request.envelope_id, payload=payload)
        await socket_client.send_socket_mode_response(response)

    client.socket_mode_request_listeners.append(ack)
    await client.connect()
    async with SlackSender(
        events_url="unused",
        signing_secret=SIGNING_SECRET,
        workspace=standin.workspace,
        standin=standin,
        socket_mode=True,
    ) as over_socket:
        try:
            await standin.wait_for_socket_connection(timeout=2)
            answer = await over_socket.slash_command("help", user="carol", channel="#ops")
            assert (answer.status, answer.json()["text"]) == (200, "slash_commands: help")
            assert standin.socket.envelopes[-1]["payload"]["user_id"] == "U0CAROL"
        finally:
            await client.close()


# --- select menus and their options -------------------------------------------------------


def test_a_static_select_holds_100_options_and_groups_of_100() -> None:
    assert validate_message_blocks([{"type": "actions", "elements": [static_select(100)]}]) == []
    grouped = grouped_select(groups=100, per_group=100)
    assert validate_message_blocks([{"type": "actions", "elements": [grouped]}]) == []


async def test_an_external_select_needs_an_options_load_url(
    slack: AsyncWebClient, standin: SlackStandIn
) -> None:
    view = modal([input_block(external_select(min_query_length=0), "team")])
    refused = await refusal(slack.views_open(trigger_id=standin.issue_trigger_id(), view=view))
    assert refused.response["error"] == "invalid_arguments"
    assert refused.response["response_metadata"]["messages"] == [
        "[ERROR] an external select needs the app's Options Load URL (Interactivity &"
        " Shortcuts: Select Menus) [json-pointer:/view/blocks/0/element]"
    ]
    message = await refusal(
        slack.chat_postMessage(
            channel="C0PAY", text="x", blocks=[{"type": "actions", "elements": [external_select()]}]
        )
    )
    assert message.response["error"] == "invalid_blocks"

    standin.options_load_url = "https://bot.test/slack/events"
    assert (await slack.views_open(trigger_id=standin.issue_trigger_id(), view=view))["ok"]
    standin.options_load_url, standin.socket_mode_enabled = None, True  # over the socket
    assert (await slack.views_open(trigger_id=standin.issue_trigger_id(), view=view))["ok"]


def test_an_options_answer_holds_at_most_100() -> None:
    hundred = {"options": [option(value=f"v{i}") for i in range(100)]}
    assert validate_options_response(hundred) == []
    assert validate_options_response({"options": []}) == []
    assert validate_options_response({"options": hundred["options"] * 2}) == [
        "no more than 100 items allowed [json-pointer:/options]"
    ]
    assert validate_options_response({"option_groups": grouped_select()["option_groups"]}) == []
    assert validate_options_response({}) == [
        "must provide either options or option_groups [json-pointer:]"
    ]


async def test_block_suggestion_is_signed_and_shows_only_a_valid_answer(
    sender: SlackSender, bot: FakeBotEndpoint, standin: SlackStandIn, slack: AsyncWebClient
) -> None:
    standin.options_load_url = bot.url
    view = modal(
        [
            input_block(external_select("team", min_query_length=0), "team"),
            input_block(external_select("service"), "service"),
        ]
    )
    opened = await slack.views_open(trigger_id=standin.issue_trigger_id(user="U0ALICE"), view=view)
    view_id = opened["view"]["id"]

    bot.reply = json.dumps({"options": [option(value="payments")]})
    shown = await sender.block_suggestion(
        user="alice", action_id="team", value="pay", view_id=view_id
    )
    assert shown.values == ["payments"] and shown.problems == []
    sent = bot.received[-1]
    assert SignatureVerifier(SIGNING_SECRET).is_valid_request(sent.body, sent.headers)
    payload = json.loads(parse_qs(sent.body.decode())["payload"][0])
    assert (payload["type"], payload["action_id"], payload["block_id"], payload["value"]) == (
        "block_suggestion",
        "team",
        "team",
        "pay",
    )
    assert payload["view"]["id"] == view_id and payload["user"]["id"] == "U0ALICE"

    bot.reply = json.dumps({"options": [option(value=f"t{i}") for i in range(101)]})
    too_many = await sender.block_suggestion(
        user="alice", action_id="team", value="", view_id=view_id
    )
    assert too_many.options == [] and too_many.problems

    with pytest.raises(ValueError, match="after 3 characters"):  # the default minimum
        await sender.block_suggestion(
            user="alice", action_id="service", value="ch", view_id=view_id
        )


async def test_a_dispatching_select_sends_block_actions_with_the_view_hash_and_state(
    sender: SlackSender, bot: FakeBotEndpoint, standin: SlackStandIn, slack: AsyncWebClient
) -> None:
    view = modal(
        [{**input_block(static_select(3, "template"), "template"), "dispatch_action": True}]
    )
    opened = await slack.views_open(trigger_id=standin.issue_trigger_id(user="U0ALICE"), view=view)
    chosen = option(value="v1")
    await sender.block_actions(
        user="alice", action_id="template", view_id=opened["view"]["id"], selected_option=chosen
    )
    payload = json.loads(parse_qs(bot.received[-1].body.decode())["payload"][0])
    assert payload["view"]["hash"] == opened["view"]["hash"]
    [action] = payload["actions"]
    assert (action["type"], action["selected_option"]) == ("static_select", chosen)
    assert payload["view"]["state"]["values"] == {
        "template": {"template": {"type": "static_select", "selected_option": chosen}}
    }
    updated = await slack.views_update(
        view_id=opened["view"]["id"], hash=payload["view"]["hash"], view=modal([section("x")])
    )
    stale = await refusal(
        slack.views_update(view_id=updated["view"]["id"], hash=payload["view"]["hash"], view=view)
    )
    assert stale.response["error"] == "hash_conflict"
