"""The bot holds only the shipped Kubernetes permissions (deploy/rbac), and they are enough.

Every sandbox cluster enforces RBAC (sandbox.standins.kubernetes_rbac): the bot's token is
its ServiceAccount, `system:serviceaccount:platform-bot:platform-bot`, bound to the shipped
ClusterRoles by the shipped ClusterRoleBindings. A call outside them is the API server's 403,
so every e2e test of a Kubernetes feature is also a test of the shipped role; and taking one
rule away from the role makes a bot action fail, here by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox.app.stack import SandboxStack, sandbox_stack
from sandbox.standins.kubernetes_rbac import BOT, shipped_policy
from tests.e2e.test_deploy_rollback import message
from tests.harness import Chat

BOT_USER = "system:serviceaccount:platform-bot:platform-bot"


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, rollout_seconds=0.1) as running:
        yield running


async def test_deploy_rollback_and_history_need_nothing_beyond_the_shipped_roles(
    stack: SandboxStack,
) -> None:
    chat = Chat(stack)
    staging = stack.clusters["sandbox-staging"]
    assert staging.policy is not None and staging.url.startswith("https://")
    seen_before = len(staging.requests)

    await chat.say("/platform deploy checkout staging 1.4.3", as_user="alice")
    await message(stack, "*Done*: deploy checkout 1.4.3 to staging")
    await chat.say("/platform rollback checkout staging", as_user="alice")
    await message(stack, "*Done*: roll back checkout in staging to revision 2")
    history = await chat.say("/platform history checkout staging", as_user="carol")

    assert history.text.startswith("*History of `checkout` in `staging`*")
    made = staging.requests[seen_before:]
    assert made, "the bot made no request"
    assert BOT.user == BOT_USER
    assert {r.user for r in made} == {BOT_USER}
    assert [r for r in made if r.status in (401, 403)] == []
    assert {"PATCH"} <= {r.method for r in made}


async def test_removing_one_rule_from_the_shipped_role_makes_a_rollback_fail_with_403(
    database_url: str,
) -> None:
    # platform-bot-releases rule 1: list replicasets (a Deployment's history)
    policy = shipped_policy().without_rule("platform-bot-releases", 1)
    async with sandbox_stack(
        database_url=database_url, rollout_seconds=0.1, kubernetes_policy=policy
    ) as stack:
        answer = await Chat(stack).say("/platform rollback checkout staging", as_user="alice")

        assert answer.text == (
            "I could not read the revisions of `checkout` in `staging`: Kubernetes: reading the "
            "history of checkout-staging/checkout failed: replicasets.apps is forbidden: User "
            f'"{BOT_USER}" cannot list resource "replicasets" in API group "apps" in the '
            'namespace "checkout-staging"'
        )
        refused = [r for r in stack.clusters["sandbox-staging"].requests if r.status == 403]
        assert [(r.method, r.path) for r in refused] == [
            ("GET", "/apis/apps/v1/namespaces/checkout-staging/replicasets")
        ]
