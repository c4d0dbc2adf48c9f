"""`/platform access` end to end: the RoleBinding appears in the cluster stand-in, the
warning with Extend arrives before the end, and a durable timer revokes it exactly once
when time (the stack's injected clock) passes the end, across racing replicas."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from engine.db import RunRow
from engine.timers import Timers
from features.access.tables import AccessGrantRow
from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.e2e.helpers import advance, click, events, said, settled
from tests.harness import Chat, eventually

NS = "checkout-staging"


def bindings(stack: SandboxStack, cluster: str = "sandbox-staging", ns: str = NS) -> list[Any]:
    return [
        b
        for b in stack.clusters[cluster].objects.list("rolebindings", ns)
        if b["metadata"]["name"].startswith("platform-access-")
    ]


async def grant_id(stack: SandboxStack) -> str:
    rows = await stack.bot.db.run(lambda s: list(s.execute(select(AccessGrantRow.id)).scalars()))
    assert len(rows) == 1
    return str(rows[0])


async def test_a_grant_is_bound_warned_about_and_revoked_once_on_schedule(
    stack: SandboxStack, chat: Chat
) -> None:
    seen = await chat.say(
        '/platform access checkout staging --role edit --for 2h --reason "debug INC-42"'
    )
    assert "grant edit access to checkout in staging for 2h" in seen.text
    assert await settled(stack, "access.grant") == ["succeeded"]
    [binding] = bindings(stack)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "edit",
    }
    assert binding["subjects"] == [
        {"kind": "User", "name": "alice@example.com", "apiGroup": "rbac.authorization.k8s.io"}
    ]
    announced = await eventually(lambda: said(stack, "C01PAYMENTS", "has *edit* access"))
    assert "debug INC-42" in announced.text
    listed = await chat.say("/platform access list checkout", as_user="bob")
    assert "<@U01ALICE> *edit* on `checkout` in `staging`" in listed.text

    await advance(stack, timedelta(hours=1, minutes=44))
    assert said(stack, "D01ALICE", "ends at") is None
    await advance(stack, timedelta(minutes=2))
    warning = await eventually(lambda: said(stack, "D01ALICE", "ends at"))
    assert "Extend" in json.dumps(warning.blocks)
    assert bindings(stack), "still bound before the end"

    # the end: two replicas race on the due timer; one Run, one revocation
    other = Timers(stack.bot.db, clock=stack.clock, worker_id="replica-2")
    for kind, handler in stack.bot.features.timers.items():
        other.register(kind, handler)
    stack.clock.advance(timedelta(minutes=15))
    await asyncio.gather(stack.bot.timers.fire_due(), other.fire_due())
    assert await settled(stack, "access.revoke") == ["succeeded"]
    assert bindings(stack) == []
    await eventually(lambda: said(stack, "C01PAYMENTS", "ended (its time was up)"))
    assert await events(stack, "access.") == ["access.granted", "access.revoked"]
    assert "Nobody has temporary access" in (await chat.say("/platform access list")).text


async def test_extend_moves_the_end_and_the_old_timer_does_nothing(
    stack: SandboxStack, chat: Chat
) -> None:
    await chat.say('/platform access checkout staging --role view --for 30m --reason "look"')
    assert await settled(stack, "access.grant") == ["succeeded"]
    await advance(stack, timedelta(minutes=16))
    warning = await eventually(lambda: said(stack, "D01ALICE", "ends at"))
    value = next(
        e["value"]
        for b in warning.blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] == "access.extend"
    )
    await click(
        stack,
        "bob",
        "access.extend",
        value,
        channel="D01ALICE",
        channel_name="directmessage",
        message_ts=warning.ts,
    )
    await click(
        stack,
        "alice",
        "access.extend",
        value,
        channel="D01ALICE",
        channel_name="directmessage",
        message_ts=warning.ts,
    )
    assert await settled(stack, "access.extend") == ["succeeded"]
    await advance(stack, timedelta(minutes=15))  # past the first end
    assert bindings(stack), "the extension keeps it"
    assert (
        await stack.bot.db.run(
            lambda s: s.query(RunRow).filter_by(action_kind="access.revoke").count()
        )
        == 0
    )
    await advance(stack, timedelta(minutes=30))
    assert await settled(stack, "access.revoke") == ["succeeded"]
    assert bindings(stack) == []
    assert await events(stack, "access.") == [
        "access.granted",
        "access.extended",
        "access.revoked",
    ]


async def test_prod_access_needs_someone_else_and_can_be_revoked_early(
    stack: SandboxStack, chat: Chat
) -> None:
    seen = await chat.say('/platform access checkout prod --role debug --for 1h --reason "INC-7"')
    assert "waits for approval" in seen.text and "prod-access" in seen.text
    card = await eventually(lambda: said(stack, "C01PAYMENTS", "Approval needed"))
    assert "platform-debug" in json.dumps(card.blocks)
    await stack.sender.block_actions(
        user="alice", action_id="approval.approve", channel="#payments", message_ts=card.ts
    )
    await stack.sender.block_actions(
        user="bob", action_id="approval.approve", channel="#payments", message_ts=card.ts
    )
    assert await settled(stack, "access.grant") == ["succeeded"]
    assert len(bindings(stack, "sandbox-prod", "checkout-prod")) == 1
    short = (await grant_id(stack))[:8]
    refused = await chat.say(f"/platform access revoke {short}", as_user="carol")
    assert "may revoke this grant" in refused.text
    seen = await chat.say(f"/platform access revoke {short}", as_user="dave")
    assert "Revoking grant" in seen.text
    assert await settled(stack, "access.revoke") == ["succeeded"]
    assert bindings(stack, "sandbox-prod", "checkout-prod") == []
    await eventually(lambda: said(stack, "C01PAYMENTS", "was revoked by <@U04DAVE>"))
    await advance(stack, timedelta(hours=2))  # the timer of the end finds it revoked
    assert await settled(stack, "access.revoke") == ["succeeded"]
    assert await events(stack, "access.") == ["access.granted", "access.revoked"]


@pytest.mark.parametrize(
    ("text", "as_user", "expected"),
    [
        ("/platform access chekout staging --role edit --for 1h --reason r", "alice", "checkout"),
        ("/platform access checkout qa --role edit --for 1h --reason r", "alice", "staging"),
        (
            "/platform access checkout staging --role root --for 1h --reason r",
            "alice",
            "--role view",
        ),
        ("/platform access checkout staging --role edit --for 9h --reason r", "alice", "8 hours"),
        (
            "/platform access checkout staging --role edit --for soon --reason r",
            "alice",
            "duration",
        ),
        ("/platform access checkout staging --role edit --for 1h", "alice", "Say why"),
        (
            "/platform access checkout staging --role edit --for 1h --reason r",
            "carol",
            "*payments*",
        ),
        (
            "/platform access checkout staging --role edit --for 1h --reason r --db readonly",
            "alice",
            "not available yet",
        ),
        ("/platform access revoke zzzzzzzz", "alice", "No single live grant"),
        ("/platform access list chekout", "alice", "checkout"),
    ],
)
async def test_bad_access_requests_say_what_to_type(
    stack: SandboxStack, chat: Chat, text: str, as_user: str, expected: str
) -> None:
    seen = await chat.say(text, as_user=as_user)
    assert expected in seen.text, seen.text
    assert await stack.bot.db.run(lambda s: s.query(RunRow).count()) == 0


async def test_someone_without_a_cluster_identity_is_told_who_to_ask(
    database_url: str, tmp_path: Any
) -> None:
    from sandbox.app.stack import SAMPLE_CONFIG

    config = tmp_path / "platform.yml"
    text = SAMPLE_CONFIG.read_text().replace("    U01ALICE: {user: alice@example.com}\n", "")
    text = re.sub(
        r"templates_dir: .*", f"templates_dir: {SAMPLE_CONFIG.parents[3] / 'templates'}", text
    )
    config.write_text(text)
    async with sandbox_stack(database_url=database_url, config=config) as stack:
        seen = await Chat(stack).say(
            '/platform access checkout staging --role view --for 1h --reason "x"'
        )
        assert "access.identities" in seen.text and "platform team" in seen.text
