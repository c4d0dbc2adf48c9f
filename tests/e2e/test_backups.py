"""Backups and restores end to end: signed Slack commands, the bot's Runs, and Velero's
stand-in inside the Kubernetes stand-in (sandbox.standins.velero), for each phase path,
bad input, the approval of a restore over prod, the restore lock, and a bot restart in
the middle of a backup."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.bootstrap import build_app
from engine.db import RunRow, utcnow
from features.backups.executors import BackupExecutor, RestoreExecutor
from sandbox.app.stack import KUBERNETES_ADMIN_TOKEN, SandboxStack, sandbox_stack
from sandbox.standins.velero import VeleroStandIn
from tests.e2e.helpers import events, settled
from tests.harness import Chat, eventually

PROD, NS = "sandbox-prod", "checkout-prod"


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url) as running:
        for kind in ("backup.create", "backup.restore", "backup.restore-copy"):
            running.bot.engine.executors[kind].watching.poll_seconds = 0.02  # type: ignore[attr-defined]
        await add_config_maps(running, ("settings", "flags", "routes"))
        yield running


def velero(stack: SandboxStack, cluster: str = PROD) -> VeleroStandIn:
    found: VeleroStandIn = stack.clusters[cluster].velero
    return found


async def add_config_maps(stack: SandboxStack, names: tuple[str, ...], ns: str = NS) -> None:
    cluster = stack.clusters[PROD]
    url = f"{cluster.url}/api/v1/namespaces/{ns}/configmaps"
    headers = {"Authorization": f"Bearer {KUBERNETES_ADMIN_TOKEN}"}  # a person, not the bot
    connector = aiohttp.TCPConnector(ssl=cluster.client_ssl())
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        for name in names:
            body = {"metadata": {"name": name}, "data": {"k": name}}
            async with http.post(url, json=body) as response:
                assert response.status == 201, await response.text()


def progress(stack: SandboxStack, channel: str, containing: str) -> Any:
    """The last version of the message (updated in place) that contains `containing`."""
    for message in reversed(stack.slack.messages.get(channel, [])):
        if containing in message.text or containing in json.dumps(message.blocks):
            return message
    return None


def text_of(message: Any) -> str:
    return f"{message.text}\n{json.dumps(message.blocks)}"


def backups_in(stack: SandboxStack) -> list[dict[str, Any]]:
    return velero(stack).all("backups")


async def take_backup(stack: SandboxStack, chat: Chat, *, ttl: str = "") -> dict[str, Any]:
    seen = await chat.say(f"/platform backup checkout prod {ttl}".strip(), channel="#payments")
    assert "Backing up `checkout` in `prod`" in seen.text, seen.text
    assert await settled(stack, "backup.create") == ["succeeded"]
    [made] = backups_in(stack)
    return made


async def test_a_backup_completes_with_counts_and_expiry_shown_in_place(
    stack: SandboxStack, chat: Chat
) -> None:
    velero(stack).time_scale = 0.05
    made = await take_backup(stack, chat, ttl="--ttl 72h")
    assert made["spec"]["includedNamespaces"] == [NS]
    assert made["spec"]["ttl"] == "72h0m0s"
    assert made["status"]["phase"] == "Completed"
    assert made["metadata"]["labels"]["platform.example.com/service"] == "checkout"
    name = made["metadata"]["name"]
    done = await eventually(lambda: progress(stack, "C01PAYMENTS", f"Backup `{name}` *Completed*"))
    assert "4/4 items" in text_of(done)
    assert "kept until" in text_of(done)
    listed = await chat.say("/platform backups checkout prod")
    assert name in listed.text and "*Completed*" in listed.text
    assert "expires in 2d" in listed.text or "expires in 71h" in listed.text
    assert "No Velero Schedule" in listed.text
    assert await events(stack, "backup.") == ["backup.started", "backup.finished"]


async def test_item_errors_make_a_partially_failed_backup_said_clearly(
    stack: SandboxStack, chat: Chat
) -> None:
    velero(stack).failing_items[f"configmaps/{NS}/flags"] = "etcdserver: request timed out"
    made = await take_backup(stack, chat)
    assert made["status"]["phase"] == "PartiallyFailed"
    name = made["metadata"]["name"]
    said = await eventually(lambda: progress(stack, "C01PAYMENTS", "*PartiallyFailed*"))
    assert "3/4 items backed up, 1 item error(s)" in text_of(said)
    assert f"velero backup logs {name}" in text_of(said)


async def test_a_failed_backup_fails_the_run_with_veleros_reason(
    stack: SandboxStack, chat: Chat
) -> None:
    velero(stack).fail_next_backup = "rpc error: code = Unavailable desc = upload failed"
    await chat.say("/platform backup checkout prod")
    assert await settled(stack, "backup.create") == ["failed"]
    said = await eventually(lambda: progress(stack, "C01PAYMENTS", "upload failed"))
    assert "*Failed*" in text_of(said)


async def test_an_unavailable_storage_location_is_said_in_veleros_words(
    stack: SandboxStack, chat: Chat
) -> None:
    velero(stack).add_location(
        "default",
        phase="Unavailable",
        message='BackupStorageLocation "default" is unavailable: rpc error: bucket not found',
    )
    seen = await chat.say("/platform backup checkout prod")
    assert "storage location `default` is Unavailable" in seen.text
    assert "bucket not found" in seen.text
    assert backups_in(stack) == []


async def test_a_location_lost_after_asking_fails_validation(
    stack: SandboxStack, chat: Chat
) -> None:
    """Velero itself refuses (FailedValidation) when the location goes between the bot's
    check and the Backup: the Run fails with Velero's validation error."""
    standin = velero(stack)
    executor = stack.bot.engine.executors["backup.create"]
    assert isinstance(executor, BackupExecutor)
    original = executor.check_location

    async def check_then_lose(velero: Any, name: str) -> str:
        phase = await original(velero, name)
        standin.add_location("default", phase="Unavailable")
        return phase

    executor.check_location = check_then_lose  # type: ignore[method-assign]
    await chat.say("/platform backup checkout prod")
    assert await settled(stack, "backup.create") == ["failed"]
    said = await eventually(lambda: progress(stack, "C01PAYMENTS", "FailedValidation"))
    assert "is in Unavailable status" in text_of(said)


async def test_a_backup_survives_a_bot_restart_in_the_middle(
    stack: SandboxStack, chat: Chat
) -> None:
    standin = velero(stack)
    standin.time_scale = 100.0  # (5 s + 4 x 2 s) x 100: about 22 minutes
    await chat.say("/platform backup checkout prod")
    [running] = await eventually(
        lambda: [b for b in backups_in(stack) if b["status"].get("phase") == "InProgress"]
    )
    await eventually(lambda: progress(stack, "C01PAYMENTS", "InProgress: 0/4 items"))
    await stack.bot.stop()

    def lease_runs_out(session: Session) -> None:  # as 30 s after a crash
        session.execute(
            update(RunRow)
            .where(RunRow.state == "running")
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )

    await stack.bot.db.run(lease_runs_out)
    standin.advance(11 * 60)  # half-way while the bot was down
    second = build_app(stack.bot.settings, auto_upgrade=True, clock=stack.clock)
    second.engine.executors["backup.create"].watching.poll_seconds = 0.02  # type: ignore[attr-defined]
    await second.start()
    try:
        await eventually(lambda: progress(stack, "C01PAYMENTS", "InProgress: 2/4 items"))
        standin.advance(12 * 60)
        assert await settled(stack, "backup.create") == ["succeeded"]
        [done] = backups_in(stack)
        assert done["metadata"]["name"] == running["metadata"]["name"]
        await eventually(lambda: progress(stack, "C01PAYMENTS", "*Completed*: 4/4 items"))
    finally:
        await second.stop()


async def test_restore_into_a_new_namespace_runs_without_approval(
    stack: SandboxStack, chat: Chat
) -> None:
    made = await take_backup(stack, chat)
    name = made["metadata"]["name"]
    seen = await chat.say(f"/platform restore checkout prod {name}")
    assert "into the new namespace `checkout-prod-restore-" in seen.text
    assert await settled(stack, "backup.restore-copy") == ["succeeded"]
    [restore] = velero(stack).all("restores")
    target = restore["spec"]["namespaceMapping"][NS]
    assert target.startswith("checkout-prod-restore-")
    copied = stack.clusters[PROD].objects.get("configmaps", target, "flags")
    assert copied is not None and copied["data"] == {"k": "flags"}
    # the copy holds the service's Secrets: its Deployments come up with 0 replicas
    assert restore["spec"]["resourceModifier"] == {
        "kind": "ConfigMap",
        "name": "platform-bot-scale-to-zero",
    }
    deployment = stack.clusters[PROD].objects.get("deployments", target, "checkout")
    assert deployment is not None and deployment["spec"]["replicas"] == 0
    live = stack.clusters[PROD].objects.get("deployments", NS, "checkout")
    assert live is not None and live["spec"]["replicas"] == 2
    said = await eventually(
        lambda: progress(stack, "C01PAYMENTS", "*Completed*: 4/4 items restored")
    )
    assert target in text_of(said)


async def test_restore_over_prod_needs_another_person_and_says_what_is_overwritten(
    stack: SandboxStack, chat: Chat
) -> None:
    made = await take_backup(stack, chat)
    name = made["metadata"]["name"]
    asked = await chat.say(f"/platform restore checkout prod {name} --into {NS}")
    assert "Say why" in asked.text or "reason" in asked.text, asked.text
    asked = await chat.say(
        f'/platform restore checkout prod {name} --into {NS} --reason "bad migration"'
    )
    assert "waits for approval" in asked.text and "prod-restore" in asked.text
    card = await eventually(lambda: progress(stack, "C01PAYMENTS", "Approval needed"))
    assert "*Overwritten*" in text_of(card) and "existingResourcePolicy: update" in text_of(card)
    assert velero(stack).all("restores") == []
    await stack.sender.block_actions(
        user="alice", action_id="approval.approve", channel="#payments", message_ts=card.ts
    )
    assert velero(stack).all("restores") == []
    await stack.sender.block_actions(
        user="bob", action_id="approval.approve", channel="#payments", message_ts=card.ts
    )
    assert await settled(stack, "backup.restore") == ["succeeded"]
    [restore] = velero(stack).all("restores")
    assert restore["spec"]["existingResourcePolicy"] == "update"
    assert "namespaceMapping" not in restore["spec"]


async def test_a_partially_failed_restore_lists_its_errors_and_warnings(
    stack: SandboxStack, chat: Chat
) -> None:
    made = await take_backup(stack, chat)
    name = made["metadata"]["name"]
    velero(stack).failing_items["configmaps/checkout-copy/routes"] = "admission webhook denied"
    velero(stack).warning_items["configmaps/checkout-copy/flags"] = "field status dropped"
    seen = await chat.say(f"/platform restore checkout prod {name} --into checkout-copy")
    assert "into the new namespace `checkout-copy`" in seen.text
    assert await settled(stack, "backup.restore-copy") == ["succeeded"]
    said = await eventually(lambda: progress(stack, "C01PAYMENTS", "*PartiallyFailed*"))
    result = text_of(said)
    assert "3/4 items restored, 1 error(s), 1 warning(s)" in result
    assert "velero restore describe" in result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/platform backup checkout qa", "No environment named 'qa'"),
        ("/platform backups search-api prod-eu", "does not run in `prod-eu`"),
        ("/platform backup checkout prod --ttl forever", "is not a TTL"),
        ("/platform backup checkout prod --ttl 9999h", "from 1 hour to 2160h"),
        ("/platform restore checkout prod", "Missing &lt;backup&gt;"),
        ("/platform restore checkout prod nope --into Bad_NS", "No backup `nope`"),
    ],
)
async def test_bad_input_gets_a_clear_message(chat: Chat, text: str, expected: str) -> None:
    seen = await chat.say(text)
    assert seen.status == 200
    assert expected in seen.text, seen.text


async def test_unknown_backup_suggests_the_nearest(stack: SandboxStack, chat: Chat) -> None:
    made = await take_backup(stack, chat)
    name = made["metadata"]["name"]
    typo = name[:-2] + "zz"
    seen = await chat.say(f"/platform restore checkout prod {typo}")
    assert f"did you mean `{name}`" in seen.text, seen.text


async def test_a_backup_in_progress_cannot_be_restored(stack: SandboxStack, chat: Chat) -> None:
    velero(stack).time_scale = 100.0
    await chat.say("/platform backup checkout prod")
    [running] = await eventually(lambda: backups_in(stack))
    seen = await chat.say(f"/platform restore checkout prod {running['metadata']['name']}")
    assert "is still" in seen.text and "once it is Completed" in seen.text
    assert velero(stack).all("restores") == []


async def test_restore_into_an_existing_namespace_must_be_named_and_be_the_services(
    stack: SandboxStack, chat: Chat
) -> None:
    made = await take_backup(stack, chat)
    name = made["metadata"]["name"]
    seen = await chat.say(f"/platform restore checkout prod {name} --into refunds-prod")
    assert "exists and is not `checkout-prod`" in seen.text
    assert velero(stack).all("restores") == []


async def test_two_restores_of_one_namespace_never_run_at_once(
    stack: SandboxStack, chat: Chat
) -> None:
    made = await take_backup(stack, chat)
    name = made["metadata"]["name"]
    velero(stack).time_scale = 100.0
    first = await chat.say(f"/platform restore checkout prod {name} --into checkout-copy")
    assert "Restoring" in first.text
    second = await chat.say(f"/platform restore checkout prod {name} --into checkout-copy")
    assert "checkout-copy" in second.text and "Restoring" not in second.text, second.text
    assert len(velero(stack).all("restores")) <= 1


async def test_a_restore_velero_refuses_fails_the_run_in_its_words(
    stack: SandboxStack, chat: Chat
) -> None:
    """The location goes Unavailable between the bot's check and the Restore: Velero marks
    it FailedValidation (restore_controller.go), and the Run fails saying so."""
    made = await take_backup(stack, chat)
    standin = velero(stack)
    executor = stack.bot.engine.executors["backup.restore-copy"]
    assert isinstance(executor, RestoreExecutor)
    original = executor.check_location

    async def check_then_lose(velero: Any, name: str) -> str:
        phase = await original(velero, name)
        standin.add_location("default", phase="Unavailable")
        return phase

    executor.check_location = check_then_lose  # type: ignore[method-assign]
    await chat.say(f"/platform restore checkout prod {made['metadata']['name']}")
    assert await settled(stack, "backup.restore-copy") == ["failed"]
    said = await eventually(lambda: progress(stack, "C01PAYMENTS", "Velero refused Restore"))
    assert "The BSL default is unavailable, cannot retrieve the backup" in text_of(said)
    [restore] = standin.all("restores")
    assert restore["status"]["phase"] == "FailedValidation"
