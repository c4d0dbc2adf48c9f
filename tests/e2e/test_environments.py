"""`/platform env` and `/platform namespace` end to end, through signed Slack requests
against the Kubernetes, GitLab and Slack stand-ins: create (namespace with its defaults,
the Deployment and Ingress, the ready message), warn (DM and thread, with Extend and
Delete now), extend, expire (once, by a durable timer on the stack's injected clock),
delete with a confirmation, a teardown that fails and is retried, a restart during
teardown, quotas, names; and a preview environment from a merge request label to merge."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.bootstrap import build_app
from engine.db import RunRow
from engine.timers import Timers
from features.environments.tables import EnvironmentRow
from sandbox.app.stack import (
    GITLAB_TOKEN,
    GITLAB_WEBHOOK_TOKEN,
    KUBERNETES_ADMIN_TOKEN,
    SandboxStack,
    sandbox_stack,
)
from tests.e2e.helpers import advance, click, events, said, settled
from tests.harness import Chat, eventually

STAGING = "sandbox-staging"


async def rows(stack: SandboxStack) -> list[EnvironmentRow]:
    def read(session: Session) -> list[EnvironmentRow]:
        found = list(session.execute(select(EnvironmentRow)).scalars())
        session.expunge_all()
        return found

    return await stack.bot.db.run(read)


def namespace(stack: SandboxStack, name: str) -> Any:
    return stack.clusters[STAGING].objects.get("namespaces", None, name)


def button_value(message: Any, action_id: str) -> str:
    return str(
        next(
            e["value"]
            for b in message.blocks
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == action_id
        )
    )


async def create(stack: SandboxStack, chat: Chat, text: str, *, as_user: str = "alice") -> str:
    seen = await chat.say(text, as_user=as_user)
    assert "Creating" in seen.text, seen.text
    assert (await settled(stack, "env.create", tries=600))[-1] == "succeeded"
    return seen.text


async def test_create_warn_extend_and_expire_once(stack: SandboxStack, chat: Chat) -> None:
    await create(
        stack, chat, "/platform env create checkout --name co-demo --version 1.4.1 --ttl 2d"
    )
    ns = namespace(stack, "env-co-demo")
    assert ns is not None and ns["metadata"]["labels"]["platform.example.com/team"] == "payments"
    objects = stack.clusters[STAGING].objects
    [quota] = objects.list("resourcequotas", "env-co-demo")
    assert quota["spec"]["hard"]["requests.cpu"] == "1"  # the small size
    assert [p["metadata"]["name"] for p in objects.list("networkpolicies", "env-co-demo")] == [
        "default-deny"
    ]
    assert [b["metadata"]["name"] for b in objects.list("rolebindings", "env-co-demo")] == [
        "team-edit"
    ]
    [deployment] = objects.list("deployments", "env-co-demo")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/payments/checkout:1.4.1"
    [ingress] = objects.list("ingresses", "env-co-demo")
    assert ingress["spec"]["rules"][0]["host"] == "co-demo.envs.sandbox.example.com"
    ready = await eventually(lambda: said(stack, "C01PAYMENTS", "is ready"))
    assert "https://co-demo.envs.sandbox.example.com" in ready.text
    assert "grafana.example.com" in ready.text

    listed = await chat.say("/platform env list payments", as_user="bob")
    assert "`co-demo`" in listed.text and "1.4.1" in listed.text and "weight 1 CPU" in listed.text
    assert "2d left" in listed.text or "1d23h left" in listed.text

    # 24 hours before the end: the creator's DM and the thread, with Extend and Delete now
    await advance(stack, timedelta(hours=23, minutes=59))
    assert said(stack, "D01ALICE", "is deleted at") is None
    await advance(stack, timedelta(minutes=2))
    warning = await eventually(lambda: said(stack, "D01ALICE", "is deleted at"))
    assert "Delete now" in json.dumps(warning.blocks)
    in_thread = await eventually(lambda: said(stack, "C01PAYMENTS", "is deleted at"))
    assert in_thread.thread_ts == ready.ts

    await click(
        stack, "alice", "env.extend", button_value(warning, "env.extend"), channel="D01ALICE"
    )
    assert await settled(stack, "env.extend", tries=600) == ["succeeded"]
    await eventually(lambda: said(stack, "C01PAYMENTS", "now lives until"))

    # past the first end: the extension keeps it; the old generation's timer does nothing
    await advance(stack, timedelta(hours=25))
    assert namespace(stack, "env-co-demo") is not None
    assert (
        await stack.bot.db.run(
            lambda s: s.query(RunRow).filter_by(action_kind="env.delete").count()
        )
        == 0
    )

    # the new end (3 days later): two replicas race on the timer; one teardown
    other = Timers(stack.bot.db, clock=stack.clock, worker_id="replica-2")
    for kind, handler in stack.bot.features.timers.items():
        other.register(kind, handler)
    stack.clock.advance(timedelta(days=3))
    await asyncio.gather(stack.bot.timers.fire_due(), other.fire_due())
    assert await settled(stack, "env.delete", tries=600) == ["succeeded"]
    assert namespace(stack, "env-co-demo") is None
    gone = await eventually(lambda: said(stack, "C01PAYMENTS", "is gone (its time was up)"))
    assert gone.thread_ts == ready.ts
    assert await events(stack, "env.") == ["env.created", "env.extended", "env.deleted"]
    assert "No environments" in (await chat.say("/platform env list")).text


async def test_delete_asks_to_confirm_and_status_shows_it(stack: SandboxStack, chat: Chat) -> None:
    await create(stack, chat, "/platform env create checkout --name co-del")
    status = await chat.say("/platform env status co-del")
    assert "*ready*" in status.text and "checkout:1.4.2" in status.text  # staging's version
    asked = await chat.say("/platform env delete co-del")
    assert "Delete environment `co-del`" in asked.text
    value = next(e["value"] for b in asked.blocks if b["type"] == "actions" for e in b["elements"])
    assert namespace(stack, "env-co-del") is not None, "nothing happens before the confirmation"
    refused = await chat.say("/platform env delete co-del", as_user="carol")
    assert "Only <@U01ALICE>" in refused.text
    await click(stack, "alice", "env.delete-confirm", value, channel="C01PAYMENTS")
    assert await settled(stack, "env.delete", tries=600) == ["succeeded"]
    assert namespace(stack, "env-co-del") is None
    await eventually(lambda: said(stack, "C01PAYMENTS", "deleted by <@U01ALICE>"))
    [row] = await rows(stack)
    assert row.state == "deleted" and row.deleted_by == "U01ALICE"


async def test_bad_names_and_limits_are_refused_with_what_to_do(
    stack: SandboxStack, chat: Chat
) -> None:
    bad = await chat.say("/platform env create checkout --name Bad_Name")
    assert "not a valid environment name" in bad.text
    shadow = await chat.say("/platform env create checkout --name prod")
    assert "configured environment" in shadow.text
    ttl = await chat.say("/platform env create checkout --ttl 30d")
    assert "longer than your team's maximum (7d)" in ttl.text
    both = await chat.say("/platform env create checkout --version 1 --branch b")
    assert "not both" in both.text
    await create(stack, chat, "/platform env create checkout --name co-one --size medium")
    again = await chat.say("/platform env create checkout --name co-one")
    assert "exists already" in again.text
    # search may have 2 CPU: a medium (2 CPU) fills it, the next is refused with what to delete
    await create(
        stack,
        chat,
        "/platform env create search-api --name s-one --size medium --version 3",
        as_user="carol",
    )
    over = await chat.say(
        "/platform env create search-api --name s-two --version 3", as_user="carol"
    )
    assert "CPU budget" in over.text and "`/platform env delete s-one`" in over.text
    # large sizes wait for approval (policy large-environments)
    large = await chat.say("/platform env create checkout --name co-big --size large")
    assert "waits for approval" in large.text and "large-environments" in large.text
    foreign = await chat.say("/platform env create checkout --name co-x", as_user="carol")
    assert "Only the *payments* team" in foreign.text


async def test_a_cluster_refusal_shows_the_api_message_and_the_record_stays(
    stack: SandboxStack, chat: Chat
) -> None:
    stack.clusters[STAGING].fail_next("POST", "/apis/apps/v1/namespaces/env-co-no/deployments", 403)
    seen = await chat.say("/platform env create checkout --name co-no")
    assert "Creating" in seen.text
    assert await settled(stack, "env.create", tries=600) == ["failed"]
    [row] = await rows(stack)
    assert row.state == "failed" and row.last_error
    listed = await chat.say("/platform env list")
    assert "*failed*" in listed.text
    # it still ends by itself
    await advance(stack, timedelta(days=3, minutes=1))
    assert await settled(stack, "env.delete", tries=600) == ["succeeded"]
    assert namespace(stack, "env-co-no") is None


async def test_teardown_failure_is_retried_and_stays_visible(
    stack: SandboxStack, chat: Chat
) -> None:
    await create(stack, chat, "/platform env create checkout --name co-retry --ttl 1h")
    stack.clusters[STAGING].fail_next("DELETE", "/api/v1/namespaces/env-co-retry", 500)
    await advance(stack, timedelta(hours=1, minutes=1))
    assert await settled(stack, "env.delete", tries=600) == ["failed"]
    [row] = await rows(stack)
    assert row.state == "deleting" and row.last_error
    assert "deleting" in (await chat.say("/platform env list")).text
    await eventually(lambda: said(stack, "C01PAYMENTS", "Deleting environment `co-retry`"))
    await advance(stack, timedelta(minutes=3))
    assert await settled(stack, "env.delete", 2, tries=600) == ["failed", "succeeded"]
    assert namespace(stack, "env-co-retry") is None
    [row] = await rows(stack)
    assert row.state == "deleted" and row.last_error is None


async def test_namespace_create_with_defaults_and_refusals(stack: SandboxStack, chat: Chat) -> None:
    seen = await chat.say("/platform namespace create payments scratch")
    assert "Creating" in seen.text, seen.text
    assert await settled(stack, "namespace.create", tries=600) == ["succeeded"]
    objects = stack.clusters[STAGING].objects
    assert namespace(stack, "payments-scratch") is not None
    assert [q["metadata"]["name"] for q in objects.list("resourcequotas", "payments-scratch")] == [
        "platform-quota"
    ]
    assert [lr["metadata"]["name"] for lr in objects.list("limitranges", "payments-scratch")] == [
        "platform-limits"
    ]
    assert "namespace.created" in await events(stack, "namespace.")
    again = await chat.say("/platform namespace create payments scratch")
    assert "exists already" in again.text
    bad = await chat.say("/platform namespace create payments Not_A_Label")
    assert "not a valid namespace name" in bad.text
    foreign = await chat.say("/platform namespace create search mine")
    assert "Only the *search* team" in foreign.text
    unknown = await chat.say("/platform namespace create nobody x")
    assert "No team named 'nobody'" in unknown.text
    # a refusal from the cluster shows the API server's own message
    stack.clusters[STAGING].fail_next("POST", "/api/v1/namespaces", 403)
    await chat.say("/platform namespace create payments denied")
    assert (await settled(stack, "namespace.create", 2, tries=600))[-1] == "failed"
    errors = await stack.bot.db.run(
        lambda s: [r.error for r in s.query(RunRow).filter_by(action_kind="namespace.create")]
    )
    assert any("creating namespace payments-denied failed: " in (e or "") for e in errors)
    await eventually(
        lambda: any(
            "creating namespace payments-denied failed" in json.dumps(m.blocks) + m.text
            for m in stack.slack.messages.get("C01PAYMENTS", [])
        )
    )
    # in a risky environment's cluster (prod: risk high) it waits for approval
    prod = await chat.say("/platform namespace create payments risky --env prod")
    assert "waits for approval" in prod.text


async def test_restart_during_teardown_finishes_it(tmp_path: Path) -> None:
    """The teardown waits on a namespace held Terminating by a finalizer; the bot stops
    mid-step; a new process (same database, same clock) resumes the Run, which finds the
    namespace gone once the finalizer is removed, and finishes once."""
    async with sandbox_stack(database_url=f"sqlite:///{tmp_path / 'bot.db'}") as stack:
        chat = Chat(stack)
        await create(stack, chat, "/platform env create checkout --name co-crash --ttl 1h")
        cluster = stack.clusters[STAGING]
        base = f"{cluster.url.rstrip('/')}/api/v1/namespaces/env-co-crash/configmaps"
        headers = {"Authorization": f"Bearer {KUBERNETES_ADMIN_TOKEN}"}  # a person, not the bot
        connector = aiohttp.TCPConnector(ssl=cluster.client_ssl())
        async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
            hold = {"metadata": {"name": "hold", "finalizers": ["example.com/hold"]}}
            async with http.post(base, json=hold) as response:
                assert response.status == 201
            stack.clock.advance(timedelta(hours=2))
            await stack.bot.timers.fire_due()
            await eventually(
                lambda: (
                    (namespace(stack, "env-co-crash") or {})
                    .get("metadata", {})
                    .get("deletionTimestamp")
                )
            )
            await asyncio.sleep(0.5)  # the teardown step is polling the Terminating namespace
            await stack.bot.stop()
            [row] = await rows(stack)
            assert row.state == "deleting"
            patch = {"metadata": {"finalizers": None}}
            async with http.patch(
                f"{base}/hold",
                json=patch,
                headers={"Content-Type": "application/merge-patch+json"},
            ) as response:
                assert response.status == 200
        second = build_app(stack.bot.settings, auto_upgrade=True, clock=stack.clock)
        await second.start()
        try:
            for _ in range(400):
                [row] = await rows(stack)
                if row.state == "deleted":
                    break
                await asyncio.sleep(0.05)
            assert row.state == "deleted"
            assert namespace(stack, "env-co-crash") is None
            assert await settled(stack, "env.delete", tries=600) == ["succeeded"]
            await eventually(lambda: said(stack, "C01PAYMENTS", "is gone (its time was up)"))
            assert await events(stack, "env.deleted") == ["env.deleted"]
        finally:
            await second.stop()


def merge_request_event(
    project: dict[str, Any], merge_request: dict[str, Any], *, action: str, updated: str
) -> dict[str, Any]:
    """GitLab's "Merge Request Hook" body (user/project/integrations/webhook_events.md)."""
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"username": "alice"},
        "project": {
            "id": project["id"],
            "path_with_namespace": project["path_with_namespace"],
            "web_url": project["web_url"],
        },
        "object_attributes": {
            "iid": merge_request["iid"],
            "title": merge_request["title"],
            "state": merge_request["state"],
            "action": action,
            "source_branch": merge_request["source_branch"],
            "target_branch": merge_request["target_branch"],
            "url": merge_request["web_url"],
            "updated_at": updated,
        },
        "labels": [{"title": t} for t in merge_request["labels"]],
    }


async def hook(stack: SandboxStack, body: dict[str, Any]) -> tuple[int, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Merge Request Hook",
        "X-Gitlab-Token": GITLAB_WEBHOOK_TOKEN,
    }
    url = f"http://127.0.0.1:{stack.bot.port}/webhooks/gitlab"
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=json.dumps(body), headers=headers) as response,
    ):
        return response.status, await response.text()


async def checkout_project(stack: SandboxStack) -> dict[str, Any]:
    url = f"{stack.gitlab.base_url}/api/v4/projects"
    headers = {"PRIVATE-TOKEN": GITLAB_TOKEN}
    data = {"name": "checkout", "path": "checkout", "namespace_id": 10}
    async with aiohttp.ClientSession() as http, http.post(url, json=data, headers=headers) as r:
        assert r.status == 201
        return dict(await r.json())


async def test_a_preview_from_the_label_to_the_merge(stack: SandboxStack) -> None:
    project = await checkout_project(stack)
    path = project["path_with_namespace"]
    mr = stack.gitlab.open_merge_request(path, source_branch="Feature/Fast-Pay", title="Pay")
    status, text = await hook(stack, merge_request_event(project, mr, action="open", updated="1"))
    assert status == 200 and "nothing to do" in text  # no label yet

    mr = stack.gitlab.set_merge_request(path, mr["iid"], labels=["preview"])
    status, text = await hook(stack, merge_request_event(project, mr, action="update", updated="2"))
    assert status == 200 and "creating checkout-mr1" in text
    assert await settled(stack, "env.create", tries=600) == ["succeeded"]
    [deployment] = stack.clusters[STAGING].objects.list("deployments", "env-checkout-mr1")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/payments/checkout:feature-fast-pay"  # the ref slug
    [note] = await eventually(lambda: stack.gitlab.notes(path, 1))
    assert "https://checkout-mr1.envs.sandbox.example.com" in note["body"]
    # GitLab redelivers: the same event makes nothing new
    await hook(stack, merge_request_event(project, mr, action="update", updated="2"))
    assert await settled(stack, "env.create", tries=600) == ["succeeded"]

    mr = stack.gitlab.set_merge_request(path, mr["iid"], state="merged")
    status, text = await hook(stack, merge_request_event(project, mr, action="merge", updated="3"))
    assert status == 200 and "deleting checkout-mr1" in text
    assert await settled(stack, "env.delete", tries=600) == ["succeeded"]
    assert namespace(stack, "env-checkout-mr1") is None
    await eventually(lambda: said(stack, "C01PAYMENTS", "its merge request was merged"))
    notes = await eventually(lambda: stack.gitlab.notes(path, 1)[1:])
    assert "was deleted (merged)" in notes[0]["body"]
    [row] = await rows(stack)
    assert row.state == "deleted" and row.creator == "platform-bot"


async def test_extending_past_the_maximum_waits_for_approval(
    stack: SandboxStack, chat: Chat
) -> None:
    await create(stack, chat, "/platform env create checkout --name co-long --ttl 6d")
    within = await chat.say("/platform env extend co-long --by 12h")
    assert "Extending by 12h: extend environment co-long" in within.text
    assert await settled(stack, "env.extend", tries=600) == ["succeeded"]
    beyond = await chat.say("/platform env extend co-long --by 1d")
    assert "waits for approval (rule `long-environments`)" in beyond.text
    other = await chat.say("/platform env extend co-long", as_user="carol")
    assert "Only <@U01ALICE> or the *payments* team" in other.text
    missing = await chat.say("/platform env status nope")
    assert "No environment called `nope`" in missing.text


async def test_a_preview_over_the_budget_is_a_note_and_closing_deletes(
    stack: SandboxStack, chat: Chat
) -> None:
    project = await checkout_project(stack)
    path = project["path_with_namespace"]
    first = stack.gitlab.open_merge_request(path, source_branch="a", labels=["preview"])
    await hook(stack, merge_request_event(project, first, action="open", updated="1"))
    assert await settled(stack, "env.create", tries=600) == ["succeeded"]
    # the payments team reaches its limits: 5 environments, 8 CPU (1 + 3 * 2 + 1)
    await create(stack, chat, "/platform env create checkout --name co-a --size medium")
    await create(stack, chat, "/platform env create checkout --name co-b --size medium")
    await create(stack, chat, "/platform env create checkout --name co-c --size medium")
    await create(stack, chat, "/platform env create checkout --name co-d")
    second = stack.gitlab.open_merge_request(path, source_branch="b", labels=["preview"])
    status, text = await hook(
        stack, merge_request_event(project, second, action="open", updated="2")
    )
    assert status == 200 and "refused" in text
    [note] = stack.gitlab.notes(path, second["iid"])
    assert note["body"].startswith("No preview environment: Team **payments** has 5 environments")
    assert "/platform env delete co-a" in note["body"]
    # the first one's label is taken off: deleted
    unlabelled = stack.gitlab.set_merge_request(path, first["iid"], labels=[])
    status, text = await hook(
        stack, merge_request_event(project, unlabelled, action="update", updated="3")
    )
    assert "deleting checkout-mr1" in text
    assert await settled(stack, "env.delete", tries=600) == ["succeeded"]
    await eventually(lambda: said(stack, "C01PAYMENTS", "lost the preview label"))
