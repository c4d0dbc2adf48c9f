"""Deploy, rollback, history and status on Kubernetes, typed and clicked as in Slack.

The sandbox stack runs the real bot with the real Kubernetes adapter against the
stand-in clusters, seeded with checkout at 1.4.1 (revision 1) then 1.4.2 (revision 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sandbox.app.stack import KUBERNETES_ADMIN_TOKEN, SandboxStack, sandbox_stack
from sandbox.standins.kubernetes import REVISION
from sandbox.standins.slack_api import Message
from tests.harness import Chat

PAYMENTS = "C01PAYMENTS"
IMAGE = "registry.example.com/payments/checkout"


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, rollout_seconds=0.1) as running:
        yield running


@pytest.fixture
def chat(stack: SandboxStack) -> Chat:
    return Chat(stack)


def deployment(stack: SandboxStack, env: str) -> tuple[str, int]:
    """checkout's (image, revision) in `env`, as the stand-in cluster stores it."""
    cluster = stack.clusters[f"sandbox-{env}"]
    found = cluster.objects.get("deployments", f"checkout-{env}", "checkout")
    assert found is not None
    image = found["spec"]["template"]["spec"]["containers"][0]["image"]
    return image, int(found["metadata"]["annotations"][REVISION])


def replicaset_revisions(stack: SandboxStack, env: str) -> dict[int, str]:
    """Revision -> image of checkout's ReplicaSets in `env`."""
    cluster = stack.clusters[f"sandbox-{env}"]
    return {
        int(rs["metadata"]["annotations"][REVISION]): rs["spec"]["template"]["spec"]["containers"][
            0
        ]["image"]
        for rs in cluster.objects.list("replicasets", f"checkout-{env}")
    }


async def message(
    stack: SandboxStack, starts: str, *, containing: str = "", within: float = 15
) -> Message:
    """The first message in #payments starting with `starts` (and containing `containing`)."""
    async with asyncio.timeout(within):
        while True:
            for found in stack.slack.messages.get(PAYMENTS, []):
                if found.text.startswith(starts) and containing in str(found.blocks) + found.text:
                    return found
            await asyncio.sleep(0.05)


async def approve(stack: SandboxStack, summary: str, *, as_user: str) -> None:
    card = await message(stack, ":lock: *Approval needed*", containing=summary)
    await stack.sender.block_actions(
        user=as_user, action_id="approval.approve", channel=PAYMENTS, message_ts=card.ts
    )


async def test_deploy_then_roll_back_to_the_previous_and_to_a_named_revision(
    stack: SandboxStack, chat: Chat
) -> None:
    seen = await chat.say("/platform deploy checkout staging 1.4.3", as_user="alice")

    assert seen.text.startswith("*Queued*: deploy checkout 1.4.3 to staging")
    assert f"{IMAGE}:1.4.2 -&gt; :1.4.3" not in seen.text  # `->` is ours, not typed text
    assert f"{IMAGE}:1.4.2 -> :1.4.3 (revision 2 -> 3)" in seen.text
    done = await message(stack, "*Done*: deploy checkout 1.4.3 to staging")
    assert "✓ Watch the rollout" in str(done.blocks)
    assert deployment(stack, "staging") == (f"{IMAGE}:1.4.3", 3)
    linked = await message(stack, "Deployed `checkout` `1.4.3` to `staging`")
    assert "https://grafana.example.com/d/checkout-overview?from=" in linked.text

    seen = await chat.say("/platform rollback checkout staging", as_user="alice")

    assert seen.text.startswith("*Queued*: roll back checkout in staging to revision 2")
    await message(stack, "*Done*: roll back checkout in staging to revision 2")
    assert deployment(stack, "staging") == (f"{IMAGE}:1.4.2", 4)
    assert replicaset_revisions(stack, "staging") == {
        1: f"{IMAGE}:1.4.1",
        3: f"{IMAGE}:1.4.3",
        4: f"{IMAGE}:1.4.2",  # revision 2's ReplicaSet, renumbered as rollout undo does
    }

    seen = await chat.say("/platform rollback checkout staging 1", as_user="alice")

    assert seen.text.startswith("*Queued*: roll back checkout in staging to revision 1")
    await message(stack, "*Done*: roll back checkout in staging to revision 1")
    assert deployment(stack, "staging") == (f"{IMAGE}:1.4.1", 5)

    history = await chat.say("/platform history checkout staging", as_user="carol")

    lines = history.text.splitlines()
    assert lines[0].startswith("*History of `checkout` in `staging`*")
    assert lines[1].startswith(f"*5* :arrow_left: *running* `{IMAGE}:1.4.1`")
    assert lines[1].endswith("rollback to revision 1 by <@U01ALICE>")
    assert lines[3].startswith(f"*3* `{IMAGE}:1.4.3`")
    assert lines[3].endswith("deploy 1.4.3 by <@U01ALICE>")


async def test_a_failing_image_ends_failed_with_the_reason(stack: SandboxStack, chat: Chat) -> None:
    cluster = stack.clusters["sandbox-staging"]
    cluster.failing_images.add("6.6.6")
    cluster.progress_deadline_seconds = 0.5

    seen = await chat.say("/platform deploy checkout staging 6.6.6", as_user="alice")

    assert seen.text.startswith("*Queued*")
    failed = await message(stack, "*Failed*: deploy checkout 6.6.6 to staging")
    assert "✗ Watch the rollout" in str(failed.blocks)
    assert "progress deadline exceeded" in str(failed.blocks)
    # the requester's copy has the Run's Retry button (the channel's copy has no buttons)
    await message(stack, "*Failed*: deploy checkout 6.6.6", containing="run.retry")


async def test_a_rollback_right_after_a_failed_deploy_succeeds_with_a_lagging_controller(
    stack: SandboxStack, chat: Chat
) -> None:
    cluster = stack.clusters["sandbox-staging"]
    cluster.failing_images.add("6.6.6")
    cluster.progress_deadline_seconds = 0.5
    cluster.observe_seconds = 0.5  # the controller sees each new generation 0.5 s late
    await chat.say("/platform deploy checkout staging 6.6.6", as_user="alice")
    await message(stack, "*Failed*: deploy checkout 6.6.6 to staging")

    seen = await chat.say("/platform rollback checkout staging", as_user="alice")

    assert seen.text.startswith("*Queued*: roll back checkout in staging to revision 2")
    # the stale Progressing=False/ProgressDeadlineExceeded stays until the controller
    # observes the rollback; the bot waits for that, as `kubectl rollout status` does
    done = await message(stack, "*Done*: roll back checkout in staging to revision 2")
    assert "progress deadline" not in str(done.blocks)
    assert deployment(stack, "staging") == (f"{IMAGE}:1.4.2", 4)
    assert not [m for m in stack.slack.messages.get(PAYMENTS, []) if "*Failed*: roll" in m.text]


async def test_a_prod_rollback_waits_for_an_sre_approval_then_runs(
    stack: SandboxStack, chat: Chat
) -> None:
    seen = await chat.say("/platform rollback checkout prod --reason 'errors'", as_user="alice")

    assert seen.text.startswith("*Waiting for approval* (rule `prod-changes`)")
    card = await message(stack, ":lock: *Approval needed*: roll back checkout in prod")
    assert f"{IMAGE}:1.4.2 -> :1.4.1 (revision 2 -> 1, which becomes revision 3)" in str(
        card.blocks
    )
    assert deployment(stack, "prod") == (f"{IMAGE}:1.4.2", 2)

    await approve(stack, "roll back checkout in prod", as_user="bob")

    await message(stack, "*Done*: roll back checkout in prod to revision 1")
    assert deployment(stack, "prod") == (f"{IMAGE}:1.4.1", 3)
    history = await chat.say("/platform history checkout prod", as_user="alice")
    assert "rollback to revision 1 by <@U01ALICE>, approved by <@U02BOB>" in history.text


async def test_an_approval_after_prod_moved_is_stale_and_nothing_runs(
    stack: SandboxStack, chat: Chat
) -> None:
    await chat.say("/platform rollback checkout prod", as_user="alice")
    await message(stack, ":lock: *Approval needed*: roll back checkout in prod")
    await set_image_by_hand(stack, "prod", f"{IMAGE}:1.5.0")
    await stack.clusters["sandbox-prod"].wait_for(
        "deployments",
        "checkout-prod",
        "checkout",
        lambda d: d["metadata"]["annotations"].get(REVISION) == "3",
    )

    await approve(stack, "roll back checkout in prod", as_user="bob")

    stale = await message(stack, ":warning: *Stale*: roll back checkout in prod")
    assert "prod moved since: now revision 3" in str(stale.blocks)
    assert str(stale.blocks).count("moved since") == 1
    await asyncio.sleep(0.5)
    assert deployment(stack, "prod") == (f"{IMAGE}:1.5.0", 3)


async def test_a_second_rollback_of_the_same_place_is_refused_while_the_first_waits(
    stack: SandboxStack, chat: Chat
) -> None:
    await chat.say("/platform rollback checkout prod", as_user="alice")

    seen = await chat.say("/platform rollback checkout prod", as_user="dave")

    assert seen.text.startswith("A rollback of `checkout/prod` is waiting for approval")
    assert "<@U01ALICE>" in seen.text
    deploy = await chat.say("/platform deploy checkout prod 1.4.3", as_user="alice")
    assert deploy.text.startswith("A rollback of `checkout/prod` is waiting for approval")


REFUSALS = [
    ("rollback checkuot prod", "alice", "No service named 'checkuot'; did you mean 'checkout'?"),
    ("deploy checkout prdo 1.4.3", "alice", "No environment named 'prdo'; did you mean 'prod'?"),
    ("rollback checkout staging", "erin", "Only the *payments* team, which owns `checkout`"),
    ("deploy checkout staging 1.4.3", "carol", "Only the *payments* team"),
    ("rollback checkout staging 42", "alice", "`checkout` in `staging` has no revision 42"),
    ("deploy checkout staging '1.0; rm -rf'", "alice", "`1.0; rm -rf` is not a version."),
    ("deploy checkout staging ../x", "alice", "`../x` is not a version."),
    ("deploy checkout staging <!channel>", "alice", "`&lt;!channel&gt;` is not a version."),
    ("deploy checkout staging " + "9" * 300, "alice", "`" + "9" * 60 + "…` is not a version."),
    ("deploy checkout staging 1.4.2", "alice", "`checkout` in `staging` already runs"),
    ("rollback checkout staging two", "alice", "`two` is not a revision"),
]


async def test_refusals_say_what_is_wrong_and_change_nothing(
    stack: SandboxStack, chat: Chat
) -> None:
    for text, user, expected in REFUSALS:
        seen = await chat.say(text, as_user=user)

        assert seen.text.startswith(expected), (text, seen.text)
        assert "<!channel>" not in seen.text
    assert deployment(stack, "staging") == (f"{IMAGE}:1.4.2", 2)
    assert PAYMENTS not in stack.slack.messages  # no Run, no progress message


async def test_status_shows_every_environment(stack: SandboxStack, chat: Chat) -> None:
    seen = await chat.say("/platform status checkout", as_user="erin")

    lines = seen.text.splitlines()
    assert lines[0] == "*Status of `checkout`* (owned by *payments*)"
    assert lines[1].startswith(f"• *staging*: `{IMAGE}:1.4.2` · 2/2 ready · revision 2")
    assert lines[2].startswith(f"• *prod*: `{IMAGE}:1.4.2` · 2/2 ready · revision 2")
    assert lines[3].startswith(f"• *prod-eu*: `{IMAGE}:1.4.2` · Synced, Healthy")
    assert "|Grafana>" in lines[1]


async def set_image_by_hand(stack: SandboxStack, env: str, image: str) -> None:
    """What someone with kubectl does behind the bot's back: `kubectl set image`."""
    cluster = stack.clusters[f"sandbox-{env}"]
    url = cluster.url.rstrip("/")
    patch: dict[str, Any] = {
        "spec": {"template": {"spec": {"containers": [{"name": "checkout", "image": image}]}}}
    }
    async with (
        aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {KUBERNETES_ADMIN_TOKEN}"}
        ) as http,
        http.patch(
            f"{url}/apis/apps/v1/namespaces/checkout-{env}/deployments/checkout",
            json=patch,
            ssl=cluster.client_ssl(),
            headers={"Content-Type": "application/strategic-merge-patch+json"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
