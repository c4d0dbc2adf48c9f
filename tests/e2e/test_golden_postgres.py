"""The golden path's Postgres end to end: `/platform new-service` through signed Slack
requests; the database is made on the machine's real PostgreSQL, its logins come from
the real OpenBao's database engine (sandbox/app/postgres.py sets both up as a platform
team does), and only the service's own Vault role may read them. Clean up names the
databases and waits for a confirmation before it drops them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import hvac
import hvac.exceptions
import psycopg
import pytest

from features.new_service.provisioning import NewServiceExecutor
from features.new_service.request import NewService
from kernel.actions import Action, Step, StepContext
from kernel.errors import StepFailed
from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.e2e.test_new_service import lines_of, open_form, progress, select
from tests.harness import Chat, eventually


class AnnouncementFails:
    """The real executor, but its last step (the announcement) fails: Clean up then."""

    action_type = NewService

    def __init__(self) -> None:
        self.real: NewServiceExecutor | None = None

    def steps(self, action: Action) -> Sequence[Step]:
        assert self.real is not None

        async def fail(context: StepContext) -> dict[str, Any]:
            raise StepFailed("Slack said no")

        return [
            Step(s.name, s.title, fail) if s.name == "slack" else s for s in self.real.steps(action)
        ]

    def failure_buttons(self, action: Action) -> list[tuple[str, str]]:
        assert self.real is not None
        return self.real.failure_buttons(action)


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def database_exists(name: str) -> bool:
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


async def test_new_service_makes_a_database_only_its_own_vault_role_reaches(
    database_url: str,
) -> None:
    async with sandbox_stack(database_url=database_url, vault=True, postgres=True) as stack:
        chat = Chat(stack)
        seen = await chat.say("/platform new-service python-fastapi ledger --team payments")
        assert seen.text.startswith("Creating `ledger`")
        done = await progress(stack, "ledger", "*Done*")
        catalog = stack.bot.ports.catalog
        staging, prod = catalog.database("ledger", "staging"), catalog.database("ledger", "prod")
        assert staging is not None and prod is not None
        assert (
            f"\u2713 PostgreSQL databases and their Vault roles: {staging.database} (staging)"
            in lines_of(done)[3]
        )
        assert database_exists(staging.database) and database_exists(prod.database)

        # the service's Vault role (what its pods log in as) reads its own logins only
        assert stack.vault_url and stack.vault_token
        root = hvac.Client(url=stack.vault_url, token=stack.vault_token)
        policy = root.sys.read_policy(name="payments-ledger-staging")["data"]["rules"]
        assert 'path "database/creds/ledger-staging"' in policy
        assert "ledger-prod" not in policy
        token = root.auth.token.create_orphan(
            policies=["payments-ledger-staging"], no_default_policy=True
        )["auth"]["client_token"]
        service = hvac.Client(url=stack.vault_url, token=token)
        login = service.secrets.database.generate_credentials(name="ledger-staging")["data"]
        with pytest.raises(hvac.exceptions.Forbidden):
            service.secrets.database.generate_credentials(name="ledger-prod")

        url = staging.url(login["username"], login["password"])
        with connect(url) as conn:
            conn.execute("CREATE TABLE invoices (id serial PRIMARY KEY)")
            conn.execute("INSERT INTO invoices DEFAULT VALUES")
        other = prod.url(login["username"], login["password"])
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            connect(other)

        # what the skeleton's deploy job fills into k8s/deployment.yaml
        scoped = {
            (v["key"], v["environment_scope"]): v["value"]
            for v in stack.gitlab.variables("payments/ledger")
        }
        assert scoped[("DATABASE_NAME", "staging")] == staging.database
        assert scoped[("DATABASE_CREDS_PATH", "staging")] == "database/creds/ledger-staging"
        assert scoped[("DATABASE_INJECT", "staging")] == "true"
        manifest = stack.gitlab.files("payments/ledger")["k8s/deployment.yaml"]
        assert (
            'vault.hashicorp.com/agent-inject-secret-database-url: "__DATABASE_CREDS_PATH__"'
            in (manifest)
        )
        announcement = next(
            m for m in stack.slack.messages["C01PAYMENTS"] if m.text.startswith(":rocket:")
        )
        assert f"`{staging.database}` (staging, logins from `database/creds/ledger-staging`)" in (
            announcement.text
        )


async def test_clean_up_names_the_databases_and_drops_them_once_confirmed(
    database_url: str,
) -> None:
    failing = AnnouncementFails()
    async with sandbox_stack(
        database_url=database_url, vault=True, postgres=True, executors=[failing]
    ) as stack:
        failing.real = NewServiceExecutor(stack.bot.ports)
        chat = Chat(stack)
        await chat.say("/platform new-service node-postgres ledger --team payments")
        failed = await progress(stack, "ledger", "*Failed*")
        catalog = stack.bot.ports.catalog
        names = [catalog.database("ledger", env) for env in ("staging", "prod", "prod-eu")]
        assert all(db is not None and database_exists(db.database) for db in names)
        databases = [db.database for db in names if db is not None]

        mark = len(stack.slack.ephemerals)
        await clean_up(stack, failed.ts)
        warning = await eventually(lambda: stack.slack.ephemerals[mark:])
        text = warning[0].text
        assert text.startswith(":warning: Clean up of `ledger` drops the PostgreSQL databases")
        assert all(f"`{name}`" in text for name in databases)
        assert all(database_exists(name) for name in databases)  # nothing dropped yet

        confirm = next(
            e for b in warning[0].blocks if b["type"] == "actions" for e in b["elements"]
        )
        await clean_up(stack, failed.ts, value=confirm["value"])
        cleaned = await progress(stack, "ledger", "*Done*", containing="Drop PostgreSQL")
        assert any(
            line.startswith("\u2713 Drop PostgreSQL databases") and "dropped" in line
            for line in lines_of(cleaned)
        )
        assert not any(database_exists(name) for name in databases)
        assert stack.vault_url and stack.vault_token
        root = hvac.Client(url=stack.vault_url, token=stack.vault_token)
        with pytest.raises(hvac.exceptions.InvalidPath):
            root.secrets.database.read_role(name="ledger-staging")
        audit = await chat.say("/platform audit ledger --action cleanup", as_user="erin")
        for step in ("record", "postgres", "vault", "kubernetes", "gitlab", "unregister"):
            assert f"*cleanup.{step}* ledger" in audit.text, audit.text


async def clean_up(stack: SandboxStack, ts: str, *, value: str | None = None) -> None:
    """Press Clean up on the failed Run's message (the confirmation's value, if given)."""
    await stack.sender.block_actions(
        user="alice",
        action_id="newservice.cleanup",
        value=value,
        channel="C01PAYMENTS",
        message_ts=ts,
    )


async def test_the_requester_picks_the_environments_in_the_command_and_the_form(
    database_url: str,
) -> None:
    async with sandbox_stack(database_url=database_url, vault=True) as stack:
        chat = Chat(stack)
        wrong = await chat.say(
            "/platform new-service node-postgres ledger --team payments --env stagin"
        )
        assert "There is no environment `stagin`; did you mean 'staging'?" in wrong.text
        refusals = await chat.say("/platform audit --action command.refused", as_user="erin")
        assert "<@U01ALICE> *command.refused* — new-service" in refusals.text
        assert "There is no environment `stagin`" in refusals.text  # the reason, as shown

        seen = await chat.say(
            "/platform new-service node-postgres ledger --team payments --env prod,staging"
        )
        assert seen.text.startswith("Creating `ledger`")
        await progress(stack, "ledger", "*Done*")
        entry = stack.bot.ports.catalog.service("ledger")
        assert entry.environments == ("staging", "prod")  # the catalog's order
        assert (
            stack.clusters["sandbox-prod-eu"].objects.get("namespaces", None, "ledger-prod-eu")
            is None
        )
        assert (
            stack.clusters["sandbox-staging"].objects.get("namespaces", None, "ledger-staging")
            is not None
        )

        # the form: every environment ticked at first; untick all and it says so
        view_id = await open_form(chat, as_user="alice")
        block = next(
            b for b in stack.slack.views[view_id].view["blocks"] if b["block_id"] == "environments"
        )
        assert block["element"]["type"] == "checkboxes"
        assert [o["value"] for o in block["element"]["initial_options"]] == [
            "staging",
            "prod",
            "prod-eu",
        ]
        values = {
            "template": {"template": select("python-fastapi")},
            "name": {"name": "ranker"},
            "team": {"team": select("payments")},
        }
        none = await stack.sender.view_submission(
            user="alice",
            view_id=view_id,
            values={**values, "environments": ticked()},
        )
        assert none.json()["errors"] == {
            "environments": "Choose at least one environment for the service."
        }
        good = await stack.sender.view_submission(
            user="alice",
            view_id=view_id,
            values={**values, "environments": ticked("prod-eu")},
        )
        assert good.status == 200 and good.body == ""
        await progress(stack, "ranker", "*Done*")
        assert stack.bot.ports.catalog.service("ranker").environments == ("prod-eu",)


def ticked(*envs: str) -> dict[str, Any]:
    options = [{"text": {"type": "plain_text", "text": e}, "value": e} for e in envs]
    return {"newservice.environments": {"type": "checkboxes", "selected_options": options}}


async def test_secret_rotate_database_waits_for_approval_then_revokes_every_login(
    database_url: str,
) -> None:
    async with sandbox_stack(database_url=database_url, vault=True, postgres=True) as stack:
        chat = Chat(stack)
        await chat.say(
            "/platform new-service python-fastapi ledger --team payments --env staging,prod"
        )
        await progress(stack, "ledger", "*Done*")
        assert stack.vault_url and stack.vault_token
        root = hvac.Client(url=stack.vault_url, token=stack.vault_token)
        in_use = root.secrets.database.generate_credentials(name="ledger-prod")["data"]
        staging = root.secrets.database.generate_credentials(name="ledger-staging")["data"]
        prod = stack.bot.ports.catalog.database("ledger", "prod")
        assert prod is not None
        assert login_exists(in_use["username"])

        nothing = await chat.say("/platform secret rotate ledger prod")
        assert "`/platform secret rotate <service> <env> database`" in nothing.text
        asked = await chat.say("/platform secret rotate ledger prod database")
        assert "waits for approval (rule `prod-changes`)" in asked.text
        card = await eventually(
            lambda: next(
                (
                    m
                    for m in stack.slack.messages.get("C01PAYMENTS", [])
                    if "rotate the database logins" in m.text and "Approve" in json.dumps(m.blocks)
                ),
                None,
            )
        )
        assert prod.database in json.dumps(card.blocks)
        assert login_exists(in_use["username"])  # nothing happens before the approval
        await stack.sender.block_actions(
            user="bob", action_id="approval.approve", channel="#payments", message_ts=card.ts
        )
        await eventually(lambda: not login_exists(in_use["username"]))
        assert login_exists(staging["username"])  # another environment's logins stay
        fresh = root.secrets.database.generate_credentials(name="ledger-prod")["data"]
        with connect(prod.url(fresh["username"], fresh["password"])) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (prod.owner,)

        async def rotated() -> bool:
            audit = await chat.say("/platform audit ledger --action secret", as_user="erin")
            return "secret.database_rotated" in audit.text

        deadline = asyncio.get_running_loop().time() + 10
        while not await rotated():
            assert asyncio.get_running_loop().time() < deadline, "no secret.database_rotated"
            await asyncio.sleep(0.2)


def login_exists(name: str) -> bool:
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
            is not None
        )
