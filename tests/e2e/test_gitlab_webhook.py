"""GitLab pipeline events through the real HTTP receiver, into one message per pipeline.

Events are posted as GitLab posts them (`X-Gitlab-Token`, `X-Gitlab-Event: Pipeline
Hook`, the documented pipeline payload); the Slack stand-in shows what the channel shows.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp

from sandbox.app.stack import GITLAB_WEBHOOK_TOKEN, SandboxStack, sandbox_stack
from sandbox.standins.slack_api import Message
from tests.harness import eventually

CHANNEL = "C01PAYMENTS"  # checkout's owner, payments
SHA = "bcbb5ec396a2c0f828686f14fac9b80b780504f2"


def pipeline(
    status: str,
    *,
    deploy: str = "created",
    ref: str = "main",
    path: str = "payments/checkout",
    finished_at: str | None = None,
) -> dict[str, Any]:
    """A Pipeline Hook body as GitLab's docs show it (trimmed), with one deploy job."""
    return {
        "object_kind": "pipeline",
        "object_attributes": {
            "id": 31,
            "iid": 3,
            "ref": ref,
            "tag": False,
            "sha": SHA,
            "status": status,
            "detailed_status": status,
            "stages": ["build", "deploy"],
            "created_at": "2026-11-27 08:00:00 UTC",
            "finished_at": finished_at,
            "url": "https://gitlab.example.com/payments/checkout/-/pipelines/31",
        },
        "project": {
            "id": 42,
            "name": "checkout",
            "path_with_namespace": path,
            "web_url": f"https://gitlab.example.com/{path}",
        },
        "builds": [
            {"id": 380, "stage": "build", "name": "build", "status": "success"},
            {
                "id": 381,
                "stage": "deploy",
                "name": "deploy-staging",
                "status": deploy,
                "environment": {"name": "staging", "action": "start"},
            },
        ],
    }


async def post(
    stack: SandboxStack,
    body: bytes | dict[str, Any] | io.BytesIO,
    *,
    token: str | None = GITLAB_WEBHOOK_TOKEN,
    event: str = "Pipeline Hook",
) -> tuple[int, str]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    url = f"http://127.0.0.1:{stack.bot.port}/webhooks/gitlab"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as response,
    ):
        return response.status, await response.text()


def pipeline_messages(stack: SandboxStack) -> list[Message]:
    return [
        m
        for m in stack.slack.messages.get(CHANNEL, [])
        if m.thread_ts is None and m.text.startswith("Pipeline #")
    ]


def shown(message: Message) -> str:
    return json.dumps(message.blocks) if message.blocks else message.text


def replies(stack: SandboxStack, parent: Message) -> list[Message]:
    return [m for m in stack.slack.thread(CHANNEL, parent.ts) if m.ts != parent.ts]


async def test_a_deploying_pipeline_is_one_message_and_a_thread(stack: SandboxStack) -> None:
    status, body = await post(stack, pipeline("running", deploy="running"))
    assert (status, json.loads(body)) == (200, {"status": "queued"})
    first = (await eventually(lambda: pipeline_messages(stack)))[0]
    assert ":arrows_counterclockwise:" in shown(first) and "*running*" in shown(first)
    assert "deploy to *staging*: running" in shown(first)
    assert "`bcbb5ec3`" in shown(first) and "pipelines/31|Pipeline #31>" in shown(first)

    done = pipeline("success", deploy="success", finished_at="2026-11-27 08:05:00 UTC")
    assert (await post(stack, done))[0] == 200
    await post(stack, done)  # GitLab retrying the same delivery tells nothing twice
    updated = await eventually(
        lambda: (m := stack.slack.message(CHANNEL, first.ts)) and "*success*" in shown(m) and m
    )
    assert "deploy to *staging*: success" in shown(updated)
    told = await eventually(lambda: replies(stack, first))
    assert "Deployed to *staging*" in told[0].text and "`deploy-staging`" in told[0].text
    await asyncio.sleep(0.3)  # time for a duplicate to show up
    assert len(pipeline_messages(stack)) == 1
    assert len(replies(stack, first)) == 1


async def test_a_late_running_does_not_regress_a_finished_pipeline(stack: SandboxStack) -> None:
    failed = pipeline("failed", deploy="failed", finished_at="2026-11-27 08:05:00 UTC")
    assert (await post(stack, failed))[0] == 200
    status, body = await post(stack, pipeline("running", deploy="running"))
    assert status == 200 and json.loads(body)["status"] == "ignored"
    message = (await eventually(lambda: pipeline_messages(stack)))[0]
    told = await eventually(lambda: replies(stack, message))
    assert "Deploy to *staging* failed" in told[0].text
    await asyncio.sleep(0.3)
    now = stack.slack.message(CHANNEL, message.ts)
    assert "*failed*" in shown(now) and "running" not in shown(now)


async def test_gitlab_text_is_escaped(stack: SandboxStack) -> None:
    await post(stack, pipeline("pending", ref="<!channel> & <@U01ALICE>"))
    message = (await eventually(lambda: pipeline_messages(stack)))[0]
    assert "<!channel>" not in shown(message) and "<!channel>" not in message.text
    assert "&lt;!channel&gt; &amp; &lt;@U01ALICE&gt;" in shown(message)


async def test_a_project_found_by_repository_or_unknown(stack: SandboxStack) -> None:
    status, body = await post(stack, pipeline("running", path="someone/else"))
    assert status == 202 and json.loads(body)["status"] == "ignored"
    assert "someone/else" in json.loads(body)["reason"]
    checkout = stack.bot.ports.catalog.service("checkout")
    stack.bot.ports.catalog.model.services["checkout"] = checkout.model_copy(
        update={"repository": "platform/apps/checkout-api"}
    )
    status, _ = await post(stack, pipeline("running", path="platform/apps/checkout-api"))
    assert status == 200
    await eventually(lambda: pipeline_messages(stack))


async def test_refusals(stack: SandboxStack) -> None:
    assert (await post(stack, pipeline("running"), token=None))[0] == 401
    assert (await post(stack, pipeline("running"), token="wrong"))[0] == 401
    status, text = await post(stack, io.BytesIO(b"x" * (2 * 1024 * 1024)))
    assert status == 413
    status, text = await post(stack, b"{not json")
    assert (status, text) == (400, "The body is not JSON.")
    broken = pipeline("running")
    del broken["project"]
    status, text = await post(stack, broken)
    assert status == 400 and "project: Field required" in text
    status, body = await post(stack, {"object_kind": "push", "ref": "main"}, event="Push Hook")
    assert status == 200 and json.loads(body)["status"] == "ignored"
    await asyncio.sleep(0.2)
    assert pipeline_messages(stack) == []


async def test_an_unset_token_refuses_every_delivery(database_url: str) -> None:
    async with sandbox_stack(
        database_url=database_url, settings_overrides={"gitlab_webhook_token": None}
    ) as stack:
        status, text = await post(stack, pipeline("running"))
        assert status == 503 and "GITLAB_WEBHOOK_TOKEN" in text
