"""What reaches /slack/events that Slack did not send, or sent oddly: refused, and said so."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from sqlalchemy import func, select

from engine.db import AuditRow, OutboxRow
from sandbox.app.stack import SandboxStack
from tests.harness import Chat


def _nothing_recorded(stack: SandboxStack, calls_before: int) -> None:
    """No Slack call (but Bolt's one-time auth.test), no outbox row, no audit entry."""
    assert [c.method for c in stack.slack.calls[calls_before:] if c.method != "auth.test"] == []
    with stack.bot.db.session() as session:
        assert session.execute(select(func.count()).select_from(OutboxRow)).scalar_one() == 0
        assert session.execute(select(func.count()).select_from(AuditRow)).scalar_one() == 0


def _command_body(stack: SandboxStack, text: str, *, team_id: str | None = None) -> bytes:
    ws = stack.workspace
    return urlencode(
        {
            "team_id": team_id or ws.team_id,
            "channel_id": "C01PAYMENTS",
            "user_id": "U01ALICE",
            "user_name": "alice",
            "command": "/platform",
            "text": text,
            "response_url": stack.slack.new_response_url(channel="C01PAYMENTS", user="U01ALICE"),
            "trigger_id": stack.slack.issue_trigger_id(user="U01ALICE"),
        }
    ).encode()


async def test_unsigned_request_is_401(stack: SandboxStack) -> None:
    import aiohttp

    before = len(stack.slack.calls)
    async with (
        aiohttp.ClientSession() as session,
        session.post(stack.sender.events_url, data=_command_body(stack, "whoami")) as response,
    ):
        assert response.status == 401
    _nothing_recorded(stack, before)


async def test_wrongly_signed_request_is_401(stack: SandboxStack) -> None:
    before = len(stack.slack.calls)
    response = await stack.sender.raw(
        _command_body(stack, "whoami"),
        content_type="application/x-www-form-urlencoded",
        signature="v0=" + "0" * 64,
    )
    assert response.status == 401
    _nothing_recorded(stack, before)


async def test_six_minute_old_request_is_401(stack: SandboxStack) -> None:
    before = len(stack.slack.calls)
    response = await stack.sender.raw(
        _command_body(stack, "whoami"),
        content_type="application/x-www-form-urlencoded",
        timestamp=int(time.time()) - 6 * 60,
    )
    assert response.status == 401
    _nothing_recorded(stack, before)


async def test_forged_click_with_someone_elses_user_id_is_401(stack: SandboxStack) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": stack.workspace.team_id},
        "user": {"id": "U02BOB"},
        "actions": [{"action_id": "approve", "value": "x"}],
    }
    response = await stack.sender.raw(
        urlencode({"payload": json.dumps(payload)}).encode(),
        content_type="application/x-www-form-urlencoded",
        signature="v0=deadbeef",
    )
    assert response.status == 401


async def test_malformed_signed_bodies_do_no_harm(stack: SandboxStack) -> None:
    before = len(stack.slack.calls)
    bodies = [
        (b"payload=%7Bnot-json", "application/x-www-form-urlencoded"),
        (b"{not json", "application/json"),
        (b"\xff\xfe\x00garbage", "application/octet-stream"),
        (b"", "application/x-www-form-urlencoded"),
        (b"payload=" + b"[1,2,3]", "application/x-www-form-urlencoded"),
    ]
    for body, content_type in bodies:
        response = await stack.sender.raw(body, content_type=content_type)
        assert response.status in (400, 401, 404), (body, response.status, response.body)
        assert "Traceback" not in response.body
    _nothing_recorded(stack, before)
    assert (
        await stack.sender.slash_command("help", user="alice", channel="#payments")
    ).status == 200


async def test_oversized_body_is_413(stack: SandboxStack) -> None:
    import io

    import aiohttp

    body = b"text=" + b"a" * (2 * 1024 * 1024)
    headers = stack.sender.sign(body, int(time.time()))
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    async with (
        aiohttp.ClientSession() as session,
        session.post(stack.sender.events_url, data=io.BytesIO(body), headers=headers) as response,
    ):
        assert response.status == 413


async def test_unknown_team_id_is_told_no(stack: SandboxStack) -> None:
    response = await stack.sender.raw(
        _command_body(stack, "whoami", team_id="T0SOMEONEELSE"),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status == 200
    assert response.json()["text"] == (
        "This platform bot only answers in the workspace it is installed in."
    )
    assert stack.slack.calls_to("users.info") == []


async def test_clicks_from_an_unknown_team_are_ignored(stack: SandboxStack) -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SOMEONEELSE", "domain": "evil"},
        "user": {"id": "U01ALICE", "team_id": "T0SOMEONEELSE"},
        "api_app_id": "A0PLATFORM",
        "trigger_id": "1.2.3",
        "actions": [{"action_id": "anything", "block_id": "b", "value": "v", "type": "button"}],
    }
    before = len(stack.slack.calls)
    response = await stack.sender.raw(
        urlencode({"payload": json.dumps(payload)}).encode(),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status == 200
    _nothing_recorded(stack, before)


async def test_event_retries_are_handled_once(chat: Chat, stack: SandboxStack) -> None:
    message = stack.slack.add_user_message("#payments", user="U01ALICE", text="<@U0PLATFORMBOT> hi")
    event = {
        "type": "app_mention",
        "user": "U01ALICE",
        "text": message.text,
        "ts": message.ts,
        "channel": "C01PAYMENTS",
        "event_ts": message.ts,
    }
    first = await stack.sender.event_callback(event, event_id="Ev0001")
    retry = await stack.sender.event_callback(event, event_id="Ev0001", retry_num=1)
    again = await stack.sender.event_callback(event, event_id="Ev0001", retry_num=2)
    assert (first.status, retry.status, again.status) == (200, 200, 200)
    reply = await stack.slack.wait_for("chat.postMessage")
    assert reply.args["thread_ts"] == message.ts
    assert "/platform help" in reply.args["text"]
    await chat.say("help")  # let the outbox drain anything else it might have had
    assert len(stack.slack.calls_to("chat.postMessage")) == 1


async def test_health_ready_and_metrics(stack: SandboxStack) -> None:
    import aiohttp

    base = stack.sender.events_url.removesuffix("/slack/events")
    async with aiohttp.ClientSession() as session:
        for path, status, needle in (
            ("/healthz", 200, "ok"),
            ("/readyz", 200, "ready"),
            ("/metrics", 200, "platform_bot_outbox_depth"),
        ):
            async with session.get(base + path) as response:
                assert response.status == status
                assert needle in await response.text()


# -- "payload" in a form body, deep nesting, wrong types ---------------------------------


async def test_a_command_whose_text_says_payload_is_answered(chat: Chat) -> None:
    """Bolt reads any form body containing `payload` as an interactivity payload (and
    answers 400 when there is none); only a field named `payload` is one."""
    seen = await chat.say("status payload-api")
    assert seen.status == 200, seen.text
    assert "payload-api" in seen.text
    seen = await chat.say("help payload")
    assert seen.status == 200, seen.text


async def test_a_signed_command_with_a_field_named_payload_too_is_still_a_command(
    stack: SandboxStack,
) -> None:
    body = _command_body(stack, "whoami") + b"&payload=%7B%7D"
    response = await stack.sender.raw(body, content_type="application/x-www-form-urlencoded")
    assert response.status == 400  # both a command and an interaction: not what Slack sends


DEEP = 50_000


def _deep(levels: int = DEEP) -> str:
    return "[" * levels + "]" * levels


def _hostile_bodies(stack: SandboxStack) -> list[tuple[str, bytes, str]]:
    """(what, body, content type): each signed, each something Slack never sends."""
    team = stack.workspace.team_id
    click = {
        "type": "block_actions",
        "team": {"id": team},
        "user": {"id": "U01ALICE"},
        "actions": [{"action_id": "alert.ack", "value": "x"}],
    }
    event = {
        "type": "event_callback",
        "team_id": team,
        "event_id": "Ev9",
        "event": {"type": "app_mention", "channel": "C01PAYMENTS", "ts": "1.2"},
    }

    def form(payload: object) -> bytes:
        return urlencode({"payload": json.dumps(payload)}).encode()

    form_type, json_type = "application/x-www-form-urlencoded", "application/json"
    deep_click = json.dumps(click)[:-1] + ', "x": ' + _deep() + "}"
    return [
        (
            "deeply nested event",
            ('{"type": "event_callback", "event": ' + _deep() + "}").encode(),
            json_type,
        ),
        ("deeply nested JSON, no type", _deep().encode(), json_type),
        ("deeply nested payload", urlencode({"payload": deep_click}).encode(), form_type),
        ("team is a string", form({**click, "team": "T1"}), form_type),
        ("user is a number", form({**click, "user": 5}), form_type),
        ("actions is an object", form({**click, "actions": {}}), form_type),
        ("an action is a string", form({**click, "actions": ["approve"]}), form_type),
        ("event is a string", json.dumps({**event, "event": "app_mention"}).encode(), json_type),
        ("team_id is a list", json.dumps({**event, "team_id": [team]}).encode(), json_type),
        ("view is a string", form({**click, "type": "view_submission", "view": "v"}), form_type),
        ("type is a number", form({**click, "type": 7}), form_type),
        ("payload is a string", form("block_actions"), form_type),
        ("command text is doubled", _command_body(stack, "a") + b"&text=b", form_type),
    ]


async def test_hostile_signed_bodies_get_400_and_reach_no_handler(stack: SandboxStack) -> None:
    before = len(stack.slack.calls)
    for what, body, content_type in _hostile_bodies(stack):
        response = await stack.sender.raw(body, content_type=content_type)
        assert response.status == 400, (what, response.status, response.body[:200])
        assert "Traceback" not in response.body
    _nothing_recorded(stack, before)
    errors = stack.bot.metrics.registry.get_sample_value(
        "platform_bot_requests_total", {"handler": "unknown", "outcome": "error"}
    )
    assert not errors
    assert (await stack.sender.slash_command("help", user="alice", channel="#payments")).status == (
        200
    )


async def test_an_unsigned_hostile_body_is_401_before_it_is_parsed(stack: SandboxStack) -> None:
    for what, body, content_type in _hostile_bodies(stack):
        response = await stack.sender.raw(body, content_type=content_type, signature="v0=00")
        assert response.status == 401, (what, response.status)


async def test_deep_nesting_in_webhooks_gets_400(stack: SandboxStack) -> None:
    import aiohttp

    from sandbox.app.stack import ALERTMANAGER_WEBHOOK_TOKEN, GITLAB_WEBHOOK_TOKEN

    base = f"http://127.0.0.1:{stack.bot.port}"
    cases = [
        ("/alerts/alertmanager", {"Authorization": f"Bearer {ALERTMANAGER_WEBHOOK_TOKEN}"}),
        ("/webhooks/gitlab", {"X-Gitlab-Token": GITLAB_WEBHOOK_TOKEN}),
    ]
    bodies = [
        _deep().encode(),
        ('{"version": "4", "object_kind": "pipeline", "alerts": ' + _deep() + "}").encode(),
    ]
    async with aiohttp.ClientSession() as session:
        for path, headers in cases:
            for body in bodies:
                async with session.post(
                    base + path, data=body, headers={**headers, "Content-Type": "application/json"}
                ) as response:
                    assert response.status == 400, (path, response.status)
                    assert "Traceback" not in await response.text()


async def test_the_bot_never_answers_500(stack: SandboxStack) -> None:
    """Every body in this file, signed and not, at every endpoint that takes a body."""
    import aiohttp

    statuses: list[tuple[str, int]] = []
    bodies = [b for _, b, _ in _hostile_bodies(stack)] + [
        b"payload=%7Bnot-json",
        b"\xff\xfe\x00garbage",
        b"payload=" + _deep(2000).encode(),
        b"team_id=" + b"%5B" * 5000,
    ]
    for body in bodies:
        for content_type in ("application/json", "application/x-www-form-urlencoded", "text/x"):
            response = await stack.sender.raw(body, content_type=content_type)
            statuses.append((f"/slack/events {body[:30]!r}", response.status))
    base = f"http://127.0.0.1:{stack.bot.port}"
    async with aiohttp.ClientSession() as session:
        for path in ("/alerts/alertmanager", "/webhooks/gitlab"):
            for body in bodies:
                async with session.post(base + path, data=body) as response:
                    statuses.append((f"{path} {body[:30]!r}", response.status))
    assert [s for s in statuses if s[1] >= 500] == []
