"""Rollbacks on Argo CD, typed and clicked as in Slack, with automated sync off and on.

The sandbox's prod-eu is an Argo CD environment: checkout runs there as the Application
`checkout-prod-eu`, history id 0 at git `a1b2c3d` (1.4.1), then id 1 at `e4f5a6b` (1.4.2).
prod-eu is `risk: high`, so a platform admin (dave) approves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandbox.app.stack import ARGOCD_TOKEN, SandboxStack, sandbox_stack
from sandbox.standins.slack_api import Message
from tests.harness import Chat

PAYMENTS = "C01PAYMENTS"
APP = "checkout-prod-eu"


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, rollout_seconds=0.1) as running:
        running.argocd.sync_seconds = 0.1
        yield running


@pytest.fixture
def chat(stack: SandboxStack) -> Chat:
    return Chat(stack)


async def message(
    stack: SandboxStack, starts: str, *, containing: str = "", within: float = 15
) -> Message:
    async with asyncio.timeout(within):
        while True:
            for found in stack.slack.messages.get(PAYMENTS, []):
                if found.text.startswith(starts) and containing in str(found.blocks) + found.text:
                    return found
            await asyncio.sleep(0.05)


async def click(stack: SandboxStack, found: Message, action_id: str, *, as_user: str) -> None:
    await stack.sender.block_actions(
        user=as_user, action_id=action_id, channel=PAYMENTS, message_ts=found.ts
    )


async def approve(stack: SandboxStack, summary: str) -> None:
    card = await message(stack, ":lock: *Approval needed*", containing=summary)
    await click(stack, card, "approval.approve", as_user="dave")


def live(stack: SandboxStack) -> tuple[str, bool]:
    """(git revision, automated sync on) of the Application, as the stand-in has it."""
    app = stack.argocd.application(APP)
    return app["status"]["sync"]["revision"], bool(app["spec"]["syncPolicy"].get("automated"))


async def turn_auto_sync_on(stack: SandboxStack) -> None:
    """What an operator does in Argo CD's UI: PATCH the Application's sync policy."""
    patch = {"spec": {"syncPolicy": {"automated": {"prune": False, "selfHeal": False}}}}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ARGOCD_TOKEN}"}) as http,
        http.patch(
            f"{stack.argocd.url.rstrip('/')}/api/v1/applications/{APP}",
            json={"patch": json.dumps(patch), "patchType": "merge"},
        ) as response,
    ):
        assert response.status == 200, await response.text()


async def test_with_auto_sync_off_a_rollback_is_approved_and_runs(
    stack: SandboxStack, chat: Chat
) -> None:
    seen = await chat.say("/platform rollback checkout prod-eu", as_user="alice")

    assert seen.text.startswith("*Waiting for approval*")
    assert "git `e4f5a6b` -> `a1b2c3d` (Argo CD history 1 -> 0)" in seen.text

    await approve(stack, "roll back checkout in prod-eu")

    await message(stack, "*Done*: roll back checkout in prod-eu to history id 0")
    assert live(stack) == ("a1b2c3d", False)
    history = await chat.say("/platform history checkout prod-eu", as_user="alice")
    assert history.text.splitlines()[1].startswith("*2* :arrow_left: *running* git `a1b2c3d`")


async def test_with_auto_sync_on_nothing_runs_until_asked_to_turn_it_off(
    stack: SandboxStack, chat: Chat
) -> None:
    await turn_auto_sync_on(stack)

    seen = await chat.say("/platform rollback checkout prod-eu", as_user="alice")

    assert seen.text.startswith("Automated sync is on for `checkout-prod-eu`")
    assert "Nothing was changed" in seen.text
    assert live(stack) == ("e4f5a6b", True)
    assert PAYMENTS not in stack.slack.messages
    [button] = seen.blocks[-1]["elements"]
    assert button["text"]["text"] == "Turn off auto-sync and roll back"

    # the ephemeral reply's button, pressed where Slack shows it
    offer = stack.slack.add_user_message(
        "#payments", user="alice", text=seen.text, blocks=list(seen.blocks)
    )
    await click(stack, offer, button["action_id"], as_user="alice")
    await approve(stack, "roll back checkout in prod-eu")

    done = await message(stack, "*Done*: roll back checkout in prod-eu to history id 0")
    assert "✓ Turn off Argo CD auto-sync" in str(done.blocks)
    assert live(stack) == ("a1b2c3d", False)
    back_on = await message(stack, "Automated sync of `checkout` in `prod-eu` is *off*")

    await click(stack, back_on, "release.auto_sync_on", as_user="alice")
    await approve(stack, "turn auto-sync on for checkout in prod-eu")

    await message(stack, "*Done*: turn auto-sync on for checkout in prod-eu")
    assert live(stack) == ("a1b2c3d", True)


async def test_a_failed_sync_ends_the_run_failed_with_argos_message(
    stack: SandboxStack, chat: Chat
) -> None:
    stack.argocd.fail_revision("a1b2c3d")

    await chat.say("/platform rollback checkout prod-eu", as_user="alice")
    await approve(stack, "roll back checkout in prod-eu")

    failed = await message(stack, "*Failed*: roll back checkout in prod-eu")
    assert "✗ Watch the rollout: " in str(failed.blocks)
    assert "Argo CD: Failed" in str(failed.blocks)


async def test_a_deploy_syncs_the_application_to_the_git_revision(
    stack: SandboxStack, chat: Chat
) -> None:
    stack.argocd.set_revision_images("f00ba12", ["registry.example.com/payments/checkout:1.4.3"])

    seen = await chat.say("/platform deploy checkout prod-eu f00ba12", as_user="alice")

    assert "git revision `e4f5a6b` -> `f00ba12` (Argo CD)" in seen.text
    await approve(stack, "deploy checkout f00ba12 to prod-eu")
    await message(stack, "*Done*: deploy checkout f00ba12 to prod-eu")
    assert live(stack) == ("f00ba12", False)
