"""Safety rules of releases and of the doors in, asserted on what happens (Runs, approval
requests, what the cluster and Argo CD hold), not on wording (issue 10, "Tests that
catch the bugs that matter"; the matching mutants are in tests/mutants/).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import select

from engine.db import RunRow
from features.approvals.request import OPEN
from features.approvals.tables import ApprovalRow, ApprovalVoteRow
from sandbox.app.stack import KUBERNETES_ADMIN_TOKEN, SandboxStack, sandbox_stack
from sandbox.standins.kubernetes import REVISION
from tests.e2e.test_argocd_rollback import click
from tests.e2e.test_deploy_rollback import approve, deployment, message
from tests.harness import Chat

PAYMENTS = "C01PAYMENTS"
IMAGE = "registry.example.com/payments/checkout"


# a whole stack and several clicks: slow on a busy machine
pytestmark = pytest.mark.timeout(150)


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, rollout_seconds=0.1) as running:
        running.argocd.sync_seconds = 0.1
        yield running


@pytest.fixture
def chat(stack: SandboxStack) -> Chat:
    return Chat(stack)


async def runs(stack: SandboxStack) -> list[tuple[str, str, str | None]]:
    """(kind, state, lock key) of every Run."""
    rows = await stack.bot.db.run(
        lambda s: s.execute(
            select(RunRow.action_kind, RunRow.state, RunRow.lock_key).order_by(RunRow.created_at)
        ).all()
    )
    return [(kind, state, lock) for kind, state, lock in rows]


async def approvals(stack: SandboxStack) -> list[str]:
    return list(
        await stack.bot.db.run(lambda s: s.execute(select(ApprovalRow.state)).scalars().all())
    )


async def test_a_deploy_is_not_accepted_while_a_rollback_of_the_same_place_waits(
    stack: SandboxStack, chat: Chat
) -> None:
    await chat.say("/platform rollback checkout prod --reason errors", as_user="alice")
    await message(stack, ":lock: *Approval needed*: roll back checkout in prod")

    await chat.say("/platform deploy checkout prod 1.4.3", as_user="alice")
    await chat.say("/platform deploy checkout prod 1.4.3", as_user="dave")

    assert await runs(stack) == [("rollback", "waiting_approval", "checkout/prod")]
    assert await approvals(stack) == [OPEN]
    await asyncio.sleep(0.3)
    cards = [m for m in stack.slack.messages.get(PAYMENTS, []) if "Approval needed" in m.text]
    assert len(cards) == 1
    assert deployment(stack, "prod") == (f"{IMAGE}:1.4.2", 2)
    # the rollback itself is unaffected and still runs once approved
    await approve(stack, "roll back checkout in prod", as_user="bob")
    await message(stack, "*Done*: roll back checkout in prod to revision 1")
    assert await runs(stack) == [("rollback", "succeeded", "checkout/prod")]


async def test_a_revision_that_moved_with_the_same_image_makes_the_approval_stale(
    stack: SandboxStack, chat: Chat
) -> None:
    """`kubectl rollout restart` makes a new revision of the same image: what the
    approver is asked about (revision 2 -> 1) is no longer what would happen."""
    await chat.say("/platform rollback checkout prod", as_user="alice")
    await message(stack, ":lock: *Approval needed*: roll back checkout in prod")
    await rollout_restart(stack, "prod")
    await stack.clusters["sandbox-prod"].wait_for(
        "deployments",
        "checkout-prod",
        "checkout",
        lambda d: d["metadata"]["annotations"].get(REVISION) == "3",
    )
    assert deployment(stack, "prod") == (f"{IMAGE}:1.4.2", 3)  # same image, new revision

    await approve(stack, "roll back checkout in prod", as_user="bob")

    await message(stack, ":warning: *Stale*: roll back checkout in prod")
    assert await approvals(stack) == ["stale"]
    assert await runs(stack) == [("rollback", "cancelled", "checkout/prod")]
    await asyncio.sleep(0.3)
    assert deployment(stack, "prod") == (f"{IMAGE}:1.4.2", 3)
    assert await stack.bot.db.run(lambda s: s.execute(select(ApprovalVoteRow)).all()) == []


async def test_an_argo_cd_deploy_approval_is_not_recorded_when_argo_cd_cannot_be_read(
    stack: SandboxStack, chat: Chat
) -> None:
    """The stale check fails closed (docs/approvals.md): no answer from Argo CD, no vote."""
    await chat.say("/platform deploy checkout prod-eu v1.4.3", as_user="alice")
    card = await message(stack, ":lock: *Approval needed*", containing="deploy checkout v1.4.3")
    stack.argocd.fail_next("GET", "/applications/checkout-prod-eu", status=503)

    told = await click(stack, card, "approval.approve", as_user="dave")

    assert told.startswith("I could not check prod-eu")

    assert await approvals(stack) == [OPEN]
    assert await stack.bot.db.run(lambda s: s.execute(select(ApprovalVoteRow)).all()) == []
    assert await runs(stack) == [("deploy", "waiting_approval", "checkout/prod-eu")]
    assert [r for r in stack.argocd.requests if r.method != "GET"] == []


async def test_a_redelivered_slash_command_makes_one_run(stack: SandboxStack) -> None:
    """Slack may deliver the same command again (same body, `X-Slack-Retry-Num`), even
    after the first has finished: it is the same request, so the same Run."""
    body = slash_body(stack, "rollback checkout staging", user="alice")
    first = await stack.sender.raw(body, content_type=FORM)
    assert first.status == 200
    await message(stack, "*Done*: roll back checkout in staging to revision 1")

    again = await stack.sender.raw(
        body,
        content_type=FORM,
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )

    assert again.status == 200
    await asyncio.sleep(0.5)
    assert await runs(stack) == [("rollback", "succeeded", "checkout/staging")]
    assert deployment(stack, "staging") == (f"{IMAGE}:1.4.1", 3)  # rolled back once


FORM = "application/x-www-form-urlencoded"


def slash_body(stack: SandboxStack, text: str, *, user: str) -> bytes:
    """The form body Slack posts for `/platform text`, as one fixed delivery."""
    who = stack.workspace.user(user)
    where = stack.workspace.channel("#payments")
    fields = {
        "token": "legacy-verification-token",
        "team_id": stack.workspace.team_id,
        "team_domain": stack.workspace.domain,
        "channel_id": where.id,
        "channel_name": where.name,
        "user_id": who.id,
        "user_name": who.name,
        "command": "/platform",
        "text": text,
        "api_app_id": stack.workspace.app_id,
        "is_enterprise_install": "false",
        "response_url": stack.slack.new_response_url(channel=where.id, user=who.id),
        "trigger_id": stack.slack.issue_trigger_id(user=who.id),
    }
    return urlencode(fields).encode()


async def rollout_restart(stack: SandboxStack, env: str) -> None:
    """What `kubectl rollout restart` does: stamp the pod template, nothing else."""
    cluster = stack.clusters[f"sandbox-{env}"]
    url = cluster.url.rstrip("/")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch: dict[str, Any] = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
        }
    }
    async with (
        aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {KUBERNETES_ADMIN_TOKEN}"},
            connector=aiohttp.TCPConnector(ssl=cluster.client_ssl()),
        ) as http,
        http.patch(
            f"{url}/apis/apps/v1/namespaces/checkout-{env}/deployments/checkout",
            data=json.dumps(patch),
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
