"""Alertmanager notifications through the real HTTP receiver, into one thread per group.

Notifications are posted as Alertmanager posts them (version 4 JSON, bearer token);
the Slack stand-in shows what the channel would show.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from app.bootstrap import build_app
from sandbox.app.stack import ALERTMANAGER_WEBHOOK_TOKEN, SandboxStack, sandbox_stack
from sandbox.standins.slack_api import Message
from tests.harness import eventually

TOKEN = ALERTMANAGER_WEBHOOK_TOKEN


def alert(
    fingerprint: str,
    *,
    labels: dict[str, str],
    status: str = "firing",
    starts: str = "2026-11-27T08:00:00Z",
    ends: str = "0001-01-01T00:00:00Z",
    summary: str | None = None,
    expr: str = "rate(http_errors_total[5m]) > 1",
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": summary} if summary else {},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph?"
        + urlencode({"g0.expr": expr, "g0.tab": "1"}),
        "fingerprint": fingerprint,
    }


def notification(
    alerts: list[dict[str, Any]],
    *,
    group_key: str = '{}:{alertname="HighErrorRate", service="checkout"}',
    common: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    firing = any(a["status"] == "firing" for a in alerts)
    common_labels = common if common is not None else _common([a["labels"] for a in alerts])
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "platform-bot",
        "groupLabels": {
            k: common_labels[k] for k in ("alertname", "service") if k in common_labels
        },
        "commonLabels": common_labels,
        "commonAnnotations": annotations or {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def _common(label_sets: list[dict[str, str]]) -> dict[str, str]:
    first = label_sets[0]
    return {k: v for k, v in first.items() if all(s.get(k) == v for s in label_sets)}


CHECKOUT = {"alertname": "HighErrorRate", "service": "checkout", "env": "prod", "severity": "page"}


async def post(
    stack: SandboxStack,
    body: bytes | dict[str, Any] | io.BytesIO | AsyncIterator[bytes],
    *,
    token: str | None = TOKEN,
    port: int | None = None,
) -> tuple[int, str]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = f"http://127.0.0.1:{port or stack.bot.port}/alerts/alertmanager"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as response,
    ):
        return response.status, await response.text()


def parents(stack: SandboxStack, channel: str) -> list[Message]:
    return [
        m
        for m in stack.slack.messages.get(channel, [])
        if m.thread_ts is None and m.text.startswith("[")
    ]


def top_level(stack: SandboxStack, channel: str) -> list[str]:
    """The ts of every message in the channel that is not a thread reply."""
    return [m.ts for m in stack.slack.messages.get(channel, []) if m.thread_ts is None]


def replies(stack: SandboxStack, channel: str, parent: Message) -> list[Message]:
    return [m for m in stack.slack.thread(channel, parent.ts) if m.ts != parent.ts]


def shown(message: Message) -> str:
    """Everything a person reads in a message: its blocks' mrkdwn, or its text."""
    return json.dumps(message.blocks) if message.blocks else message.text


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url) as running:
        running.bot.alerts.groups.window = timedelta(seconds=0.1)  # coalesce quickly in tests
        yield running


async def test_firing_then_resolved_is_one_thread_updated_in_place(stack: SandboxStack) -> None:
    a = alert("a1", labels={**CHECKOUT, "instance": "pod-1"}, summary="5% of requests fail")
    b = alert("b2", labels={**CHECKOUT, "instance": "pod-2"}, summary="5% of requests fail")
    status, _ = await post(stack, notification([a, b], annotations={"summary": "Errors up"}))
    assert status == 200

    parent = await eventually(lambda: parents(stack, "C01PAYMENTS"))
    first = parent[0]
    assert first.text.startswith("[FIRING:2] HighErrorRate")
    assert "*Firing:* 2" in shown(first) and "Errors up" in shown(first)
    assert "https://runbooks.example.com/checkout" in shown(first)
    assert {"alert.ack", "alert.silence", "alert.query", "alert.rollback"} <= _buttons(first)
    told = await eventually(lambda: replies(stack, "C01PAYMENTS", first))
    assert "Firing `instance=pod-1`" in told[0].text and "instance=pod-2" in told[0].text

    resolved_a = {**a, "status": "resolved", "endsAt": "2026-11-27T08:10:00Z"}
    await post(stack, notification([resolved_a, b]))
    await eventually(lambda: "*Resolved:* 1" in shown(stack.slack.message("C01PAYMENTS", first.ts)))
    resolved_b = {**b, "status": "resolved", "endsAt": "2026-11-27T08:12:00Z"}
    await post(stack, notification([resolved_a, resolved_b]))
    final = await eventually(
        lambda: [m for m in replies(stack, "C01PAYMENTS", first) if "All alerts" in m.text]
    )
    assert "Resolved `instance=pod-2`" in final[0].text
    now = stack.slack.message("C01PAYMENTS", first.ts)
    assert now.text.startswith("[RESOLVED] HighErrorRate") and "All resolved" in shown(now)
    assert "alert.rollback" not in _buttons(now)  # nothing to roll back once resolved
    assert len(parents(stack, "C01PAYMENTS")) == 1
    samples = stack.bot.metrics.registry
    assert (
        samples.get_sample_value("platform_bot_alert_notifications_total", {"outcome": "queued"})
        == 3
    )
    assert samples.get_sample_value("platform_bot_alert_notifications_applied_total") == 3


async def test_ha_duplicates_and_late_updates_make_one_thread(stack: SandboxStack) -> None:
    a = alert("a1", labels={**CHECKOUT, "instance": "pod-1"})
    firing = notification([a])
    resolved = notification([{**a, "status": "resolved", "endsAt": "2026-11-27T08:05:00Z"}])
    # Three Alertmanager peers send the same notification at once.
    statuses = await asyncio.gather(*(post(stack, firing) for _ in range(3)))
    assert [s for s, _ in statuses] == [200, 200, 200]
    await post(stack, resolved)
    await post(stack, firing)  # a peer's late copy of the older state changes nothing
    parent = await eventually(
        lambda: [m for m in parents(stack, "C01PAYMENTS") if m.text.startswith("[RESOLVED]")]
    )
    await eventually(
        lambda: any("All alerts" in m.text for m in replies(stack, "C01PAYMENTS", parent[0]))
    )
    await asyncio.sleep(0.5)  # time for anything wrong to show up
    assert len(parents(stack, "C01PAYMENTS")) == 1
    assert stack.slack.message("C01PAYMENTS", parent[0].ts).text.startswith("[RESOLVED]")


async def test_a_restart_between_firing_and_resolved_keeps_the_thread(
    stack: SandboxStack,
) -> None:
    a = alert("a1", labels={**CHECKOUT, "instance": "pod-1"})
    await post(stack, notification([a]))
    parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]
    await eventually(lambda: replies(stack, "C01PAYMENTS", parent))

    await stack.bot.stop()
    second = build_app(stack.bot.settings, auto_upgrade=True)
    await second.start()
    try:
        second.alerts.groups.window = timedelta(seconds=0.1)
        resolved = {**a, "status": "resolved", "endsAt": "2026-11-27T08:05:00Z"}
        status, _ = await post(stack, notification([resolved]), port=second.port)
        assert status == 200
        await eventually(
            lambda: stack.slack.message("C01PAYMENTS", parent.ts).text.startswith("[RESOLVED]")
        )
        await eventually(
            lambda: any("All alerts" in m.text for m in replies(stack, "C01PAYMENTS", parent))
        )
        assert len(parents(stack, "C01PAYMENTS")) == 1
    finally:
        await second.stop()


async def test_wrong_or_missing_token_is_refused(stack: SandboxStack) -> None:
    body = notification([alert("a1", labels=CHECKOUT)])
    assert (await post(stack, body, token=None))[0] == 401
    status, text = await post(stack, body, token="guess")
    assert status == 401 and "bearer token" in text
    await asyncio.sleep(0.3)
    assert parents(stack, "C01PAYMENTS") == []
    metrics = stack.bot.metrics
    refused = metrics.registry.get_sample_value(
        "platform_bot_alert_notifications_total", {"outcome": "unauthorized"}
    )
    assert refused == 2
    assert (
        metrics.registry.get_sample_value(
            "platform_bot_alert_notifications_total", {"outcome": "queued"}
        )
        is None
    )


async def test_without_a_configured_token_the_webhook_is_refused(stack: SandboxStack) -> None:
    stack.bot.alerts.receiver.token = None  # as built when ALERTMANAGER_WEBHOOK_TOKEN is unset
    status, text = await post(stack, notification([alert("a1", labels=CHECKOUT)]))
    assert status == 503 and "ALERTMANAGER_WEBHOOK_TOKEN" in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[]", "JSON object"),
        (json.dumps({"version": "3"}).encode(), "version"),
        (
            json.dumps({**notification([], common={}), "alerts": [{"status": "odd"}]}).encode(),
            "alerts.0",
        ),
    ],
)
async def test_malformed_payloads_get_400_with_the_reason(
    stack: SandboxStack, body: bytes, reason: str
) -> None:
    status, text = await post(stack, body)
    assert status == 400 and reason in text


async def test_a_5_mb_body_is_refused_with_413(stack: SandboxStack) -> None:
    declared = io.BytesIO(b"x" * (5 * 1024 * 1024))  # with Content-Length: refused unread
    status, text = await post(stack, declared)
    assert status == 413 and "larger than" in text

    async def chunks() -> AsyncIterator[bytes]:  # chunked, no length: refused past 1 MiB
        for _ in range(80):
            yield b"x" * 65536

    status, text = await post(stack, chunks())
    assert status == 413 and "larger than" in text


async def test_labels_cannot_ping_or_format(stack: SandboxStack) -> None:
    hostile = {
        **CHECKOUT,
        "alertname": "<!channel> *bold* & <@U01ALICE>",
        "instance": "<https://evil.example|docs>",
    }
    body = notification(
        [alert("h1", labels=hostile, summary="<!here> go")],
        annotations={"summary": "<!channel> wake up", "runbook_url": "https://x|<!channel>"},
    )
    await post(stack, body)
    parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]
    reply = (await eventually(lambda: replies(stack, "C01PAYMENTS", parent)))[0]
    for message in (parent, reply):
        seen = shown(message)
        assert "<!channel>" not in seen and "<!here>" not in seen and "<@U01ALICE>" not in seen
        assert "<https://evil" not in seen
    assert "&lt;!channel&gt;" in shown(parent)
    assert "Runbook" not in shown(parent)  # a link that could break out is not shown


async def test_an_unknown_service_goes_to_the_fallback_channel_with_a_note(
    stack: SandboxStack,
) -> None:
    labels = {"alertname": "DiskFull", "service": "billing", "env": "prod"}
    await post(stack, notification([alert("d1", labels=labels)], group_key="{}:billing"))
    parent = (await eventually(lambda: parents(stack, "C03PLATFORM")))[0]
    assert "`billing` is not in the catalog" in shown(parent)
    assert "alert.rollback" not in _buttons(parent)


async def test_ack_shows_on_the_parent_and_outsiders_are_refused(stack: SandboxStack) -> None:
    await post(stack, notification([alert("a1", labels=CHECKOUT)]))
    parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]

    mark = len(stack.slack.ephemerals)
    await stack.sender.block_actions(
        user="erin", action_id="alert.ack", channel="C01PAYMENTS", message_ts=parent.ts
    )
    refusal = await eventually(lambda: [e for e in stack.slack.ephemerals[mark:]])
    assert refusal[0].text.startswith("Only members of *payments*")

    assert "alert.ack" in _buttons(parent)
    await stack.sender.block_actions(
        user="alice", action_id="alert.ack", channel="C01PAYMENTS", message_ts=parent.ts
    )
    await eventually(
        lambda: "*Acked by* <@U01ALICE>" in shown(stack.slack.message("C01PAYMENTS", parent.ts))
    )
    acked = stack.slack.message("C01PAYMENTS", parent.ts)
    assert "alert.ack" not in _buttons(acked)  # the Ack button became "Acked by @alice"
    assert {"alert.silence", "alert.rollback"} <= _buttons(acked)
    [line] = [b for b in acked.blocks if b["type"] == "context" and "Acked" in json.dumps(b)]
    assert line["elements"][0]["text"].startswith(":eyes: *Acked by* <@U01ALICE> at ")


def _buttons(message: Message) -> set[str]:
    return {
        element["action_id"]
        for block in message.blocks
        if block["type"] == "actions"
        for element in block["elements"]
    }


async def test_rollback_button_starts_the_rollback_flow_with_approval(stack: SandboxStack) -> None:
    await post(stack, notification([alert("a1", labels=CHECKOUT)]))
    parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]
    mark = len(stack.slack.ephemerals)
    await stack.sender.block_actions(
        user="alice", action_id="alert.rollback", channel="C01PAYMENTS", message_ts=parent.ts
    )
    reply = await eventually(lambda: [e for e in stack.slack.ephemerals[mark:]])
    assert reply[0].text.startswith("*Waiting for approval* (rule `prod-changes`)")
    assert "roll back checkout in prod" in reply[0].text
    # The note and then the approval card are replies in the alert's thread...
    card = await eventually(
        lambda: [
            m for m in replies(stack, "C01PAYMENTS", parent) if "approval.approve" in _buttons(m)
        ]
    )
    thread = replies(stack, "C01PAYMENTS", parent)
    note = [m for m in thread if m.text.startswith(":rewind:")]
    assert note[0].text.startswith(":rewind: <@U01ALICE> asked for a rollback of `checkout`")
    assert thread.index(note[0]) < thread.index(card[0])
    assert "roll back checkout in prod" in card[0].text
    # ...not new messages in the channel (the channel holds the alert's parent only).
    assert top_level(stack, "C01PAYMENTS") == [parent.ts]

    # Approved in the thread, the Run's progress is told there too.
    await stack.sender.block_actions(
        user="bob", action_id="approval.approve", channel="C01PAYMENTS", message_ts=card[0].ts
    )
    await eventually(
        lambda: [
            m
            for m in replies(stack, "C01PAYMENTS", parent)
            if m.text.startswith(("*Running*", "*Done*", "*Failed*", "*Queued*"))
        ]
    )
    assert top_level(stack, "C01PAYMENTS") == [parent.ts]


async def test_two_replicas_receiving_the_same_notification_make_one_thread(
    stack: SandboxStack,
) -> None:
    second = build_app(stack.bot.settings.model_copy(update={"worker_id": "replica-2", "port": 0}))
    await second.start()
    try:
        body = notification([alert("a1", labels={**CHECKOUT, "instance": "pod-1"})])
        for _ in range(3):  # each Alertmanager peer reaches a different replica
            statuses = await asyncio.gather(post(stack, body), post(stack, body, port=second.port))
            assert [s for s, _ in statuses] == [200, 200]
        parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]
        await eventually(lambda: replies(stack, "C01PAYMENTS", parent))
        await asyncio.sleep(0.5)  # time for a second thread to show up, if there were one
        assert len(parents(stack, "C01PAYMENTS")) == 1
        assert len(replies(stack, "C01PAYMENTS", parent)) == 1
    finally:
        await second.stop()


async def test_silence_form_says_what_to_type_for_a_bad_duration(stack: SandboxStack) -> None:
    await post(stack, notification([alert("a1", labels=CHECKOUT)]))
    parent = (await eventually(lambda: parents(stack, "C01PAYMENTS")))[0]
    await stack.sender.block_actions(
        user="alice", action_id="alert.silence", channel="C01PAYMENTS", message_ts=parent.ts
    )
    view = await eventually(
        lambda: [v for v in stack.slack.views.values() if v.view["callback_id"] == "alert.silence"]
    )
    choice = {"type": "static_select", "selected_option": {"value": "custom"}}
    response = await stack.sender.view_submission(
        user="alice",
        view_id=view[0].id,
        values={"duration": {"duration": choice}, "custom": {"custom": "soon"}},
    )
    assert response.status == 200
    assert response.json() == {
        "response_action": "errors",
        "errors": {"custom": "Type a duration such as 90m, 2h or 3d."},
    }
