"""`/platform new-service` end to end: signed Slack requests into the real bot, whose real
adapters talk to the GitLab and Kubernetes stand-ins and to a real OpenBao.

What we look at afterwards is what the stand-ins hold (and their request logs), what
OpenBao holds, the catalog, and every version of the progress message Slack was sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import hvac
import pytest
from kubernetes import client
from pydantic import SecretStr
from sqlalchemy import update

from app.bootstrap import build_app
from engine.db import RunRow
from engine.progress import STEP_ICONS
from features.new_service.provisioning import NewServiceExecutor
from features.new_service.request import NewService
from kernel.actions import Action, Step, StepContext
from kernel.ports.systems import SecretStore
from sandbox.app.stack import KUBERNETES_ADMIN_TOKEN, SandboxStack, sandbox_stack
from sandbox.standins.slack_api import Message
from tests.harness import Chat, eventually

ENVIRONMENTS = ("staging", "prod", "prod-eu")
CLUSTER_OF = {"staging": "sandbox-staging", "prod": "sandbox-prod", "prod-eu": "sandbox-prod-eu"}
STATE_OF_ICON = {icon: state for state, icon in STEP_ICONS.items()}
ORDER = {"pending": 0, "running": 1, "done": 2, "failed": 2}
HOLD = "example.com/hold"


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, vault=True) as running:
        yield running


def vault(stack: SandboxStack) -> SecretStore:
    store = stack.bot.ports.adapters.vault
    assert store is not None
    return store


async def progress(
    stack: SandboxStack, service: str, headline: str, *, containing: str = "", wait: float = 15
) -> Message:
    """The progress message of the Run about `service`, once it says `headline`."""
    for _ in range(int(wait / 0.05)):
        for message in stack.slack.messages.get("C01PAYMENTS", []):
            if (
                message.text.startswith(headline)
                and f" {service} " in message.text
                and containing in json.dumps(message.blocks, ensure_ascii=False)
            ):
                return message
        await asyncio.sleep(0.05)
    seen = [m.text for m in stack.slack.messages.get("C01PAYMENTS", [])]
    raise AssertionError(f"no progress message for {service} saying {headline!r}; saw {seen}")


def versions(stack: SandboxStack, message: Message) -> list[list[tuple[str, str]]]:
    """Every version of a message Slack was sent: for each, (step title, state) per line."""
    sent = [
        c
        for c in stack.slack.calls
        if c.ok
        and (
            (c.method == "chat.postMessage" and c.response.get("ts") == message.ts)
            or (c.method == "chat.update" and c.args.get("ts") == message.ts)
        )
    ]
    result = []
    for call in sent:
        blocks = call.args.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        lines = blocks[1]["text"]["text"].splitlines() if len(blocks) > 1 else []
        steps = []
        for line in lines:
            icon, _, rest = line.partition(" ")
            steps.append((rest.split(":")[0], STATE_OF_ICON[icon]))
        result.append(steps)
    return result


def assert_progress_was_right(history: list[list[tuple[str, str]]], titles: list[str]) -> None:
    """Every version shows every step in order; steps only move forward; a running step
    follows only done ones; at most one runs at a time."""
    assert history, "the progress message was never sent"
    previous = ["pending"] * len(titles)
    for steps in history:
        assert [title for title, _ in steps] == titles
        states = [state for _, state in steps]
        assert all(
            ORDER[now] >= ORDER[before] for now, before in zip(states, previous, strict=True)
        )
        assert states.count("running") <= 1
        for position, state in enumerate(states):
            if state in ("running", "failed"):
                assert all(s == "done" for s in states[:position]), states
        previous = states


def select(value: str, kind: str = "external_select") -> dict[str, Any]:
    return {"type": kind, "selected_option": {"value": value}}


async def open_form(chat: Chat, *, as_user: str) -> str:
    seen = await chat.say("/platform new-service", as_user=as_user)
    assert seen.text.startswith("Fill in the form"), seen.text
    views = [v for v in chat.slack.views.values() if v.view.get("callback_id") == "newservice"]
    assert len(views) == 1 and chat.slack.calls_to("views.open")[-1].ok
    return views[0].id


async def test_a_service_from_the_modal_to_everything_it_needs(
    stack: SandboxStack,
) -> None:
    chat = Chat(stack)
    view_id = await open_form(chat, as_user="alice")
    blocks = [b["block_id"] for b in stack.slack.views[view_id].view["blocks"]]
    assert blocks[:4] == ["template", "name", "team", "description"]
    assert not [b for b in blocks if b.startswith("param.")]  # no template chosen yet

    # The menus are external selects, filled by the bot as alice types.
    sender = stack.sender
    teams = await sender.block_suggestion(
        user="alice", action_id="new_service.team", value="pay", view_id=view_id
    )
    assert teams.values == ["payments"] and not teams.problems
    paths = await sender.block_suggestion(
        user="alice", action_id="new_service.template", value="", view_id=view_id
    )
    assert paths.values == ["node-postgres", "python-fastapi"]

    # Choosing a template shows its fields, and only its fields.
    chosen = next(o for o in paths.options if o["value"] == "node-postgres")
    before = stack.slack.views[view_id].hash
    await sender.block_actions(
        user="alice", action_id="new_service.template", view_id=view_id, selected_option=chosen
    )
    update = await stack.slack.wait_for("views.update")
    assert update.ok and update.args["hash"] == before
    blocks = [b["block_id"] for b in stack.slack.views[view_id].view["blocks"]]
    params = [b for b in blocks if b.startswith("param.")]
    assert params and all(b.startswith("param.node-postgres.") for b in params)

    wrong = await stack.sender.view_submission(
        user="alice",
        view_id=view_id,
        values={
            "template": {"template": select("node-postgres")},
            "name": {"name": "Invoices"},
            "team": {"team": select("sre")},
            "param.node-postgres.port": {"value": "80"},
        },
    )
    assert wrong.json() == {
        "response_action": "errors",
        "errors": {
            "name": "Use lowercase letters: 'invoices'.",
            "team": "You are not in team 'sre'. Ask someone in it (or a platform admin) to "
            "create the service, or choose your own team.",
            "param.node-postgres.port": "port must be at least 1024",
        },
    }
    assert view_id in stack.slack.views  # the form stays open with the errors

    good = await stack.sender.view_submission(
        user="alice",
        view_id=view_id,
        values={
            "template": {"template": select("node-postgres")},
            "name": {"name": "invoices"},
            "team": {"team": select("payments")},
            "description": {"description": "Invoices & <!channel> receipts"},
            "param.node-postgres.port": {"value": "9090"},
        },
    )
    assert good.status == 200 and good.body == ""
    done = await progress(stack, "invoices", "*Done*")
    titles = [
        "GitLab project, skeleton and CI/CD",
        "Kubernetes namespaces",
        "Vault paths, policies and roles",
        "PostgreSQL databases and their Vault roles",
        "Catalog entry",
        "Announcement in the team channel",
    ]
    history = versions(stack, done)
    assert_progress_was_right(history, titles)
    assert history[-1] == [(title, "done") for title in titles]
    assert history[0] == [(title, "pending") for title in titles]  # as it was queued

    gitlab = stack.gitlab
    assert gitlab.project("payments/invoices")["description"] == "Invoices & <!channel> receipts"
    assert len(gitlab.commits("payments/invoices")) == 1
    files = gitlab.files("payments/invoices")
    assert {"package.json", "Dockerfile", ".gitlab-ci.yml", "catalog-info.yaml"} <= set(files)
    assert "9090" in files["Dockerfile"] + files["src/server.js"]
    scoped = {
        (v["key"], v["environment_scope"]): v["value"]
        for v in gitlab.variables("payments/invoices")
    }
    for env in ENVIRONMENTS:
        assert scoped[("KUBE_NAMESPACE", env)] == f"invoices-{env}"
    assert [b["name"] for b in gitlab.protected_branches("payments/invoices")] == ["main"]

    for env in ENVIRONMENTS:
        objects = stack.clusters[CLUSTER_OF[env]].objects
        namespace = objects.get("namespaces", None, f"invoices-{env}")
        assert namespace is not None
        labels = namespace["metadata"]["labels"]
        assert "payments" in labels.values() and "invoices" in labels.values()
        for kind in (
            "resourcequotas",
            "limitranges",
            "networkpolicies",
            "rolebindings",
            "serviceaccounts",
        ):
            assert objects.list(kind, f"invoices-{env}"), f"no {kind} in invoices-{env}"
        assert objects.get("serviceaccounts", f"invoices-{env}", "invoices") is not None
        secrets = await vault(stack).describe(
            "payments",
            "invoices",
            env,
            policy=f"payments-invoices-{env}",
            role=f"payments-invoices-{env}",
        )
        assert (secrets.kv_exists, secrets.policy_exists, secrets.role_exists) == (True,) * 3

    assert stack.bot.ports.catalog.service("invoices").repository == "payments/invoices"
    [schedule] = stack.clusters["sandbox-prod"].velero.all("schedules")  # prod only (platform.yml)
    assert schedule["metadata"]["name"] == "invoices-prod-daily"
    assert schedule["spec"]["schedule"] == "0 3 * * *"
    assert schedule["spec"]["template"]["includedNamespaces"] == ["invoices-prod"]
    assert schedule["spec"]["template"]["ttl"] == "720h0m0s"
    assert stack.clusters["sandbox-staging"].velero.all("schedules") == []
    announcement = next(
        m for m in stack.slack.messages["C01PAYMENTS"] if m.text.startswith(":rocket:")
    )
    assert "payments/invoices" in announcement.text
    assert "secret/payments/invoices/prod" in announcement.text
    assert "<!channel>" not in announcement.text  # the description is escaped

    again = await chat.say(
        "/platform new-service node-postgres invoices --team payments", as_user="alice"
    )
    assert "`invoices` is already in the catalog (owned by `payments`)" in again.text


class StopsInVault:
    """The real executor, but its Vault step never returns: the worker dies there."""

    action_type = NewService

    def __init__(self) -> None:
        self.real: NewServiceExecutor | None = None
        self.in_vault = asyncio.Event()

    def steps(self, action: Action) -> Sequence[Step]:
        assert self.real is not None
        steps = list(self.real.steps(action))

        async def hang(context: StepContext) -> dict[str, Any]:
            self.in_vault.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        return [Step(s.name, s.title, hang) if s.name == "vault" else s for s in steps]


async def test_a_worker_killed_in_step_three_is_resumed_by_another_bot(
    database_url: str,
) -> None:
    stopper = StopsInVault()
    async with sandbox_stack(database_url=database_url, vault=True, executors=[stopper]) as stack:
        stopper.real = NewServiceExecutor(stack.bot.ports)
        marks = {name: len(c.requests) for name, c in stack.clusters.items()}
        gitlab_mark = len(stack.gitlab.requests)
        seen = await Chat(stack).say(
            "/platform new-service python-fastapi ranker --team search", as_user="carol"
        )
        assert seen.text.startswith("Creating `ranker`")
        await asyncio.wait_for(stopper.in_vault.wait(), 15)

        for task in asyncio.all_tasks():  # the first bot's worker dies, as with kill -9
            if task.get_name() == "run-worker":
                task.cancel()
        await asyncio.sleep(0)
        killed_at = {name: len(c.requests) for name, c in stack.clusters.items()}
        gitlab_killed_at = len(stack.gitlab.requests)
        await stack.bot.db.run(  # ...and its lease runs out
            lambda s: s.execute(update(RunRow).values(lease_until=RunRow.created_at))
        )
        second = build_app(
            stack.bot.settings.model_copy(update={"worker_id": "second", "port": 0}),
            auto_upgrade=True,
        )
        try:
            await second.start()
            await progress(stack, "ranker", "*Done*")
            assert second.ports.catalog.service("ranker").owner == "search"
        finally:
            await second.stop()

        creates = [r for r in stack.gitlab.requests[gitlab_mark:] if r.method == "POST"]
        assert [r.path for r in creates if r.path.endswith("/projects")] == ["/api/v4/projects"]
        assert len([r for r in creates if r.path.endswith("/repository/commits")]) == 1
        assert len(stack.gitlab.commits("search/ranker")) == 1
        for name, cluster in stack.clusters.items():
            posts = [
                r
                for r in cluster.requests[marks[name] :]
                if r.method == "POST" and r.path == "/api/v1/namespaces"
            ]
            assert len(posts) == 1, f"{name}: {posts}"
        for env in ENVIRONMENTS:
            secrets = await vault(stack).describe(
                "search", "ranker", env, policy=f"search-ranker-{env}", role=f"search-ranker-{env}"
            )
            assert secrets.policy_exists and secrets.role_exists
        files = stack.gitlab.files("search/ranker")
        assert "app/main.py" in files and "tests/test_app.py" in files

        # the second bot went on at step 3: GitLab only heard the announcement's question
        # for pipeline links, and no cluster heard anything
        after = stack.gitlab.requests[gitlab_killed_at:]
        assert after and all(r.path.endswith("/pipelines") for r in after), after
        assert all(len(c.requests) == killed_at[n] for n, c in stack.clusters.items())


async def test_gitlab_500_then_retry_then_a_failure_then_clean_up_leaves_nothing(
    stack: SandboxStack,
) -> None:
    chat = Chat(stack)
    stack.gitlab.fail_next("POST", "/projects/1/repository/commits", status=500)
    seen = await chat.say("/platform new-service node-postgres ledger --team payments")
    assert seen.text.startswith("Creating `ledger`")
    failed = await progress(stack, "ledger", "*Failed*")
    gitlab_line = failed.blocks[1]["text"]["text"].splitlines()[0]
    assert gitlab_line.startswith("\u2717 GitLab project, skeleton and CI/CD: committing")
    assert "500 Internal Server Error" in gitlab_line
    buttons = [
        e["action_id"] for b in failed.blocks if b["type"] == "actions" for e in b["elements"]
    ]
    assert buttons == ["run.retry", "newservice.cleanup"]
    assert stack.gitlab.project("payments/ledger")["id"] == 1
    assert stack.gitlab.commits("payments/ledger") == []

    client = hvac.Client(url=stack.vault_url, token=stack.vault_token)
    client.sys.disable_auth_method(path="kubernetes")  # Vault stops trusting the clusters
    await stack.sender.block_actions(
        user="alice", action_id="run.retry", channel="C01PAYMENTS", message_ts=failed.ts
    )
    failed = await progress(stack, "ledger", "*Failed*", containing="\u2717 Vault paths")
    assert "\u2713 GitLab project" in failed.blocks[1]["text"]["text"]
    vault_line = failed.blocks[1]["text"]["text"].splitlines()[2]
    assert vault_line.startswith(
        "\u2717 Vault paths, policies and roles: staging: Vault could not write Kubernetes role"
    )
    assert len(stack.gitlab.commits("payments/ledger")) == 1

    await stack.sender.block_actions(
        user="alice", action_id="newservice.cleanup", channel="C01PAYMENTS", message_ts=failed.ts
    )
    assert stack.clusters["sandbox-prod"].velero.get("schedules", "ledger-prod-daily")
    cleaned = await progress(stack, "ledger", "*Done*", containing="Delete the GitLab project")
    said = "\n".join(lines_of(cleaned))
    assert "backup schedule ledger-prod-daily deleted" in said
    assert "its backups stay until they expire (the last on " in said
    assert stack.clusters["sandbox-prod"].velero.all("schedules") == []
    assert stack.clusters["sandbox-prod"].velero.all("backups")  # kept until they expire
    # the failed Run was closed for good: no Retry that would provision it again
    closed = await progress(stack, "ledger", "*Cancelled*", containing="closed to clean up")
    assert not [b for b in closed.blocks if b["type"] == "actions"]

    with pytest.raises(KeyError):
        stack.gitlab.project("payments/ledger")
    for env in ENVIRONMENTS:
        assert (
            stack.clusters[CLUSTER_OF[env]].objects.get("namespaces", None, f"ledger-{env}") is None
        )
        secrets = await vault(stack).describe(
            "payments",
            "ledger",
            env,
            policy=f"payments-ledger-{env}",
            role=f"payments-ledger-{env}",
        )
        assert (secrets.kv_exists, secrets.policy_exists, secrets.role_exists) == (False,) * 3
    assert "ledger" not in stack.bot.ports.catalog.model.services


# -- Clean up that always finishes ----------------------------------------------------------


def lines_of(message: Message) -> list[str]:
    text: str = message.blocks[1]["text"]["text"]
    return text.splitlines()


def contexts_of(message: Message) -> list[str]:
    return [b["elements"][0]["text"] for b in message.blocks if b["type"] == "context"]


def kube_core(stack: SandboxStack, cluster: str) -> client.CoreV1Api:
    """The official client on one of the stack's clusters: what a person with kubectl does."""
    standin = stack.clusters[cluster]
    config = client.Configuration(host=standin.url)
    config.ssl_ca_cert = str(standin.ca_file)
    config.api_key = {"authorization": f"Bearer {KUBERNETES_ADMIN_TOKEN}"}
    return client.CoreV1Api(client.ApiClient(config))


async def hold(core: client.CoreV1Api, namespace: str) -> None:
    """Give `namespace` content that a finalizer holds, so deleting it waits for that."""
    held = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="held", finalizers=[HOLD]))
    await asyncio.to_thread(core.create_namespaced_config_map, namespace, held)


async def release(core: client.CoreV1Api, namespace: str) -> None:
    patch = {"metadata": {"finalizers": None}}
    await asyncio.to_thread(core.patch_namespaced_config_map, "held", namespace, patch)


async def test_clean_up_with_vault_unconfigured_removes_the_rest_and_says_what_is_left(
    database_url: str,
) -> None:
    no_vault = {"vault_addr": None, "vault_token": None}
    async with sandbox_stack(
        database_url=database_url, vault=True, settings_overrides=no_vault
    ) as stack:
        chat = Chat(stack)
        seen = await chat.say("/platform new-service node-postgres ledger --team payments")
        assert seen.text.startswith("Creating `ledger`")
        failed = await progress(stack, "ledger", "*Failed*")
        assert lines_of(failed)[2] == (
            "\u2717 Vault paths, policies and roles: Vault is not configured on this bot"
        )
        operator = (
            ":wrench: Vault is not configured on this bot (it needs VAULT_ADDR and VAULT_TOKEN). "
            "That is not yours to fix: ask the platform team (<!subteam^S03PLATFORM>), then "
            "press Retry."
        )
        assert contexts_of(failed) == [operator]  # said once, as the operator's problem
        assert json.dumps(failed.blocks).count("VAULT_ADDR") == 1

        await stack.sender.block_actions(
            user="alice",
            action_id="newservice.cleanup",
            channel="C01PAYMENTS",
            message_ts=failed.ts,
        )
        kept = await progress(stack, "ledger", "*Failed*", containing="Remove the catalog entry")
        dated = r"\(the last on \d{4}-\d{2}-\d{2} UTC\)"  # the daily Schedule's first backup
        assert [re.sub(dated, "(the last on <date>)", line) for line in lines_of(kept)] == [
            "\u2713 Keep the catalog entry while anything is left: `/platform status` shows what "
            "is left until all of it is gone",
            "\u2717 Delete Vault paths, policies and roles: Vault is not configured on this bot",
            "\u2713 Delete Kubernetes namespaces (and wait until they are gone): ledger-staging, "
            "ledger-prod, ledger-prod-eu gone; backup schedule ledger-prod-daily deleted; its "
            "backups stay until they expire (the last on <date>)",
            "\u2713 Delete the GitLab project: payments/ledger removed for good",
            "\u2717 Remove the catalog entry: kept while these remain: Vault paths, policies and "
            "roles payments-ledger-* (staging, prod, prod-eu). Retry does only what failed",
        ]
        assert contexts_of(kept) == [operator]
        buttons = [
            e["action_id"] for b in kept.blocks if b["type"] == "actions" for e in b["elements"]
        ]
        assert buttons == ["run.retry"]
        with pytest.raises(KeyError):
            stack.gitlab.project("payments/ledger")
        for env in ENVIRONMENTS:
            namespaces = stack.clusters[CLUSTER_OF[env]].objects
            assert namespaces.get("namespaces", None, f"ledger-{env}") is None

        # what is left stays findable, and holds the name
        status = await chat.say("/platform status ledger", as_user="erin")
        assert ":broom: Being removed: Clean up was asked by <@U01ALICE>. Still there:\n" in (
            status.text
        )
        assert "• Vault paths, policies and roles payments-ledger-* (staging, prod, prod-eu)" in (
            status.text
        )
        audit = await chat.say("/platform audit ledger", as_user="erin")
        assert "*catalog.removing* ledger" in audit.text and "*run.failed* ledger" in audit.text
        again = await chat.say("/platform new-service node-postgres ledger --team payments")
        assert "`ledger` is still being cleaned up; the name frees up once all of it is gone." in (
            again.text
        )

        # the platform team configures Vault (a bot started with it takes over the work),
        # and Retry does only what failed
        for task in asyncio.all_tasks():
            if task.get_name() == "run-worker":
                task.cancel()
        second = build_app(
            stack.bot.settings.model_copy(
                update={
                    "worker_id": "second",
                    "port": 0,
                    "vault_addr": stack.vault_url,
                    "vault_token": SecretStr(stack.vault_token or ""),
                }
            ),
            auto_upgrade=True,
        )
        try:
            await second.start()
            gitlab_mark = len(stack.gitlab.requests)
            cluster_marks = {n: len(c.requests) for n, c in stack.clusters.items()}
            await stack.sender.block_actions(
                user="alice", action_id="run.retry", channel="C01PAYMENTS", message_ts=kept.ts
            )
            done = await progress(stack, "ledger", "*Done*", containing="Remove the catalog entry")
            assert lines_of(done)[-1] == (
                "\u2713 Remove the catalog entry: all gone; the name ledger is free"
            )
            assert contexts_of(done) == []
            assert stack.gitlab.requests[gitlab_mark:] == []  # done parts were not redone
            assert all(len(c.requests) == cluster_marks[n] for n, c in stack.clusters.items())
            await stack.bot.registry.refresh()  # what its catalog-refresh loop does, every 30 s
            assert "ledger" not in stack.bot.ports.catalog.model.services
            seen = await chat.say("/platform new-service node-postgres ledger --team payments")
            assert seen.text.startswith("Creating `ledger`")
        finally:
            await second.stop()


async def test_a_held_name_says_so_and_is_reusable_once_kubernetes_and_gitlab_free_it(
    stack: SandboxStack,
) -> None:
    stack.gitlab.immediate_deletion_allowed = False  # as on GitLab.com
    chat = Chat(stack)
    staging = kube_core(stack, "sandbox-staging")
    prod = kube_core(stack, "sandbox-prod")

    # someone deleted a namespace by hand, and a finalizer holds it: that name is not free
    await asyncio.to_thread(
        staging.create_namespace, client.V1Namespace(metadata={"name": "orders-staging"})
    )
    await hold(staging, "orders-staging")
    await asyncio.to_thread(staging.delete_namespace, "orders-staging")
    await stack.clusters["sandbox-staging"].wait_for(  # the namespace controller's first go
        "Namespace", None, "orders-staging", lambda ns: bool(ns["status"].get("conditions"))
    )
    seen = await chat.say("/platform new-service node-postgres orders --team payments")
    assert (
        "The namespace `orders-staging` in staging is still being deleted (Terminating since "
        in (seen.text)
    )
    assert (
        "the name frees up once Kubernetes has removed it, usually within minutes. It waits for: "
        in (seen.text)
    )

    # a new service fails at Vault; while it is cleaned up, a finalizer holds a namespace
    vault_api = hvac.Client(url=stack.vault_url, token=stack.vault_token)
    vault_api.sys.disable_auth_method(path="kubernetes")  # its Vault step fails
    await chat.say("/platform new-service node-postgres ledger --team payments")
    failed = await progress(stack, "ledger", "*Failed*")
    old_id = stack.gitlab.project("payments/ledger")["id"]
    await hold(prod, "ledger-prod")
    await stack.sender.block_actions(
        user="alice", action_id="newservice.cleanup", channel="C01PAYMENTS", message_ts=failed.ts
    )
    await progress(
        stack,
        "ledger",
        "*Running*",
        containing="ledger-prod: Terminating (Some resources are remaining: configmaps. has 1 "
        "resource instances; Some content in the namespace has finalizers remaining: "
        f"{HOLD} in 1 resource instances)",
    )
    again = await chat.say("/platform new-service node-postgres ledger --team payments")
    assert "`ledger` is still being cleaned up" in again.text

    await release(prod, "ledger-prod")
    done = await progress(stack, "ledger", "*Done*", containing="Remove the catalog entry")
    today = datetime.now(UTC).date().isoformat()
    assert lines_of(done)[3] == (
        f"\u2713 Delete the GitLab project: GitLab marked it for deletion on {today} and will not "
        "remove it at once here (`permanently_remove` option is not permitted on this instance): "
        f"it keeps it as payments/ledger-deletion_scheduled-{old_id} for its retention period (30 "
        "days unless your GitLab admins changed it), then removes it; the name payments/ledger "
        "is free already"
    )
    kept = stack.gitlab.project(f"payments/ledger-deletion_scheduled-{old_id}")
    assert kept["marked_for_deletion_on"] == today

    seen = await chat.say("/platform new-service node-postgres ledger --team payments")
    assert seen.text.startswith("Creating `ledger`")
    # a new project takes the path (GitLab drops the redirect to the marked one)
    await eventually(lambda: stack.gitlab.project("payments/ledger")["id"] != old_id)
    made = await progress(stack, "ledger", "*Failed*", containing="\u2713 Kubernetes namespaces")
    assert lines_of(made)[:2] == [  # (Vault still distrusts the clusters: it fails there again)
        "\u2713 GitLab project, skeleton and CI/CD",
        "\u2713 Kubernetes namespaces",
    ]
