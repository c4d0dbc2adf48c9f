"""Deploys and rollbacks on Argo CD, typed and clicked as in Slack, against a stand-in that
behaves as Argo CD does: `status.sync.revision` stays at git's HEAD, operations run in
the background, automated sync redeploys HEAD when it comes back on.

The sandbox's prod-eu is an Argo CD environment: checkout runs there as the Application
`checkout-prod-eu`, history id 0 at git `a1b2c3d` (1.4.1), then id 1 at `e4f5a6b` (1.4.2,
main's HEAD); `f00ba12` (1.4.3, tag v1.4.3) is on a release branch. prod-eu is `risk:
high`, so a platform admin (dave) approves.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select

from features.approvals.request import OPEN
from features.approvals.tables import ApprovalRow, ApprovalVoteRow
from sandbox.app.stack import ARGOCD_COMMITS, ARGOCD_TOKEN, SandboxStack, sandbox_stack
from sandbox.standins.slack_api import Message
from tests.harness import Chat, eventually

PAYMENTS = "C01PAYMENTS"
APP = "checkout-prod-eu"
OLD, HEAD, NEXT = (ARGOCD_COMMITS[v] for v in ("1.4.1", "1.4.2", "1.4.3"))
POLICY = {"prune": True, "selfHeal": True}


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


async def click(stack: SandboxStack, found: Message, action_id: str, *, as_user: str) -> str:
    """`as_user` clicks a button on `found`; what they are told, ephemerally ("" if nothing
    within a few seconds: a click that proposes answers in the channel too)."""
    who = stack.workspace.user(as_user).id
    mark = len(stack.slack.ephemerals)
    await stack.sender.block_actions(
        user=as_user, action_id=action_id, channel=PAYMENTS, message_ts=found.ts
    )
    for _ in range(100):
        for seen in stack.slack.ephemerals[mark:]:
            if seen.user == who:
                return seen.text
        await asyncio.sleep(0.03)
    return ""


async def approve(stack: SandboxStack, summary: str) -> str:
    card = await message(stack, ":lock: *Approval needed*", containing=summary)
    return await click(stack, card, "approval.approve", as_user="dave")


def live(stack: SandboxStack) -> tuple[str, str, dict[str, Any] | None]:
    """(what runs: the newest history entry's revision, git's `status.sync.revision`, the
    exact `automated` block) of the Application, as the stand-in has it."""
    app = stack.argocd.application(APP)
    newest = max(app["status"]["history"], key=lambda h: h["id"])
    automated = app["spec"]["syncPolicy"].get("automated")
    return newest["revision"], app["status"]["sync"]["revision"], automated


async def patch_sync_policy(stack: SandboxStack, automated: dict[str, Any] | None) -> None:
    """What an operator does in Argo CD's UI: PATCH the Application's sync policy."""
    patch = {"spec": {"syncPolicy": {"automated": automated}}}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ARGOCD_TOKEN}"}) as http,
        http.patch(
            f"{stack.argocd.url.rstrip('/')}/api/v1/applications/{APP}",
            json={"patch": json.dumps(patch), "patchType": "merge"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
    await stack.argocd.wait_idle(APP)


async def test_with_auto_sync_off_a_rollback_is_approved_and_runs(
    stack: SandboxStack, chat: Chat
) -> None:
    seen = await chat.say("/platform rollback checkout prod-eu", as_user="alice")

    assert seen.text.startswith("*Waiting for approval*")
    assert "git `e4f5a6b` -> `a1b2c3d` (Argo CD history 1 -> 0)" in seen.text

    await approve(stack, "roll back checkout in prod-eu")

    await message(stack, "*Done*: roll back checkout in prod-eu to history id 0")
    assert live(stack) == (OLD, HEAD, None)  # git still says HEAD; history says what runs
    assert stack.argocd.application(APP)["status"]["sync"]["status"] == "OutOfSync"
    history = await chat.say("/platform history checkout prod-eu", as_user="alice")
    assert history.text.splitlines()[1].startswith("*2* :arrow_left: *running* git `a1b2c3d`")
    assert "git `HEAD` is `e4f5a6b`, OutOfSync" in history.text.splitlines()[0]


async def test_with_auto_sync_on_it_goes_off_for_the_rollback_and_back_on_as_it_was(
    stack: SandboxStack, chat: Chat
) -> None:
    await patch_sync_policy(stack, POLICY)

    seen = await chat.say(
        '/platform rollback checkout prod-eu --reason "errors since 1.4.2"', as_user="alice"
    )

    assert seen.text.startswith("Automated sync is on for `checkout-prod-eu`")
    assert "Nothing was changed" in seen.text
    assert live(stack) == (HEAD, HEAD, POLICY)
    assert PAYMENTS not in stack.slack.messages
    [button] = seen.blocks[-1]["elements"]
    assert button["text"]["text"] == "Turn off auto-sync and roll back"

    # the ephemeral reply's button, pressed where Slack shows it
    offer = stack.slack.add_user_message(
        "#payments", user="alice", text=seen.text, blocks=list(seen.blocks)
    )
    await click(stack, offer, button["action_id"], as_user="alice")
    card = await message(stack, ":lock: *Approval needed*", containing="roll back checkout")
    assert "*Reason:* errors since 1.4.2" in str(card.blocks)
    assert 'Automated sync (`automated: {"prune": true, "selfHeal": true}`)' in str(card.blocks)
    await approve(stack, "roll back checkout in prod-eu")

    done = await message(stack, "*Done*: roll back checkout in prod-eu to history id 0")
    assert "✓ Turn off Argo CD auto-sync" in str(done.blocks)
    await stack.argocd.wait_idle(APP)
    assert live(stack) == (OLD, HEAD, {**POLICY, "enabled": False})  # off, policy kept
    back_on = await message(stack, "Automated sync of `checkout` in `prod-eu` is *off*")

    await click(stack, back_on, "release.auto_sync_on", as_user="alice")
    card = await message(stack, ":lock: *Approval needed*", containing="turn auto-sync on")
    assert "Argo CD then deploys git `e4f5a6b`" in str(card.blocks)
    await approve(stack, "turn auto-sync on for checkout in prod-eu")

    await message(stack, "*Done*: turn auto-sync on for checkout in prod-eu")
    answered = await eventually(
        lambda: (
            (m := stack.slack.message(PAYMENTS, back_on.ts)).text.startswith(
                "Automated sync of `checkout` in `prod-eu` was turned off for a rollback"
            )
            and m
        )
    )
    assert "Turned back on by <@U01ALICE> at " in answered.text
    assert all(block["type"] != "actions" for block in answered.blocks)
    await stack.argocd.wait_idle(APP)
    # exactly as it was, and Argo CD's automated sync then deploys git's HEAD again
    assert live(stack) == (HEAD, HEAD, POLICY)


async def test_an_application_set_app_is_refused_with_its_name(
    stack: SandboxStack, chat: Chat
) -> None:
    await patch_sync_policy(stack, POLICY)
    stack.argocd.adopt(APP, application_set="checkout-environments")
    mark = len(stack.argocd.requests)

    seen = await chat.say("/platform rollback checkout prod-eu", as_user="alice")

    assert seen.text.startswith(
        "`checkout-prod-eu` is generated by the ApplicationSet `checkout-environments`"
    )
    assert not seen.blocks or all(b["type"] != "actions" for b in seen.blocks)
    assert [r for r in stack.argocd.requests[mark:] if r.method != "GET"] == []
    status = await chat.say("/platform status checkout", as_user="alice")
    assert "generated by the ApplicationSet `checkout-environments`" in status.text


async def test_a_failed_sync_ends_the_run_failed_with_argos_message(
    stack: SandboxStack, chat: Chat
) -> None:
    stack.argocd.fail_revision(OLD)

    await chat.say("/platform rollback checkout prod-eu", as_user="alice")
    await approve(stack, "roll back checkout in prod-eu")

    failed = await message(stack, "*Failed*: roll back checkout in prod-eu")
    assert "✗ Watch the rollout: " in str(failed.blocks)
    assert "Argo CD: Failed" in str(failed.blocks)


@pytest.mark.parametrize("typed", ["v1.4.3", NEXT[:7]])
async def test_a_deploy_of_a_tag_or_short_sha_syncs_and_waits_for_the_full_sha(
    stack: SandboxStack, chat: Chat, typed: str
) -> None:
    seen = await chat.say(f"/platform deploy checkout prod-eu {typed}", as_user="alice")

    assert f"git revision `e4f5a6b` -> `{typed}` (Argo CD)" in seen.text
    await approve(stack, f"deploy checkout {typed} to prod-eu")
    await message(stack, f"*Done*: deploy checkout {typed} to prod-eu")
    assert live(stack) == (NEXT, HEAD, None)
    again = await chat.say(f"/platform deploy checkout prod-eu {NEXT[:10]}", as_user="alice")
    assert again.text.startswith("`checkout` in `prod-eu` already runs git revision `f00ba12`")


async def test_an_unknown_revision_fails_with_argos_words(stack: SandboxStack, chat: Chat) -> None:
    await chat.say("/platform deploy checkout prod-eu v9.9.9", as_user="alice")
    await approve(stack, "deploy checkout v9.9.9 to prod-eu")

    failed = await message(stack, "*Failed*: deploy checkout v9.9.9 to prod-eu")
    assert "unable to resolve 'v9.9.9' to a commit SHA" in str(failed.blocks)


async def test_an_approval_while_argo_cd_cannot_be_read_is_not_recorded(
    stack: SandboxStack, chat: Chat
) -> None:
    await chat.say("/platform rollback checkout prod-eu", as_user="alice")
    stack.argocd.fail_next("GET", f"/applications/{APP}", status=503)

    told = await approve(stack, "roll back checkout in prod-eu")

    assert told.startswith("I could not check prod-eu before recording your approval")
    assert "it was *not* recorded; the request stays open" in told
    states = await stack.bot.db.run(lambda s: s.execute(select(ApprovalRow.state)).scalars().all())
    assert list(states) == [OPEN]
    assert await stack.bot.db.run(lambda s: s.execute(select(ApprovalVoteRow)).all()) == []
    assert [r for r in stack.argocd.requests if r.method != "GET"] == []

    told = await approve(stack, "roll back checkout in prod-eu")  # Argo CD answers again

    assert "that was the last approval needed, so it runs now" in told
    await message(stack, "*Done*: roll back checkout in prod-eu to history id 0")


async def test_an_approval_after_someone_synced_in_argo_cd_is_stale_said_once(
    stack: SandboxStack, chat: Chat
) -> None:
    await chat.say("/platform deploy checkout prod-eu v1.4.3", as_user="alice")
    await message(stack, ":lock: *Approval needed*", containing="deploy checkout v1.4.3")
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ARGOCD_TOKEN}"}) as http,
        http.post(
            f"{stack.argocd.url.rstrip('/')}/api/v1/applications/{APP}/rollback",
            json={"id": 0},
        ) as response,
    ):
        assert response.status == 200
    await stack.argocd.wait_idle(APP)

    told = await approve(stack, "deploy checkout v1.4.3 to prod-eu")

    assert told.startswith("prod-eu moved since this was asked: now git revision a1b2c3d")
    assert told.count("moved since") == 1
    stale = await message(stack, ":warning: *Stale*: deploy checkout v1.4.3 to prod-eu")
    assert str(stale.blocks).count("moved since") == 1
    assert live(stack)[0] == OLD
