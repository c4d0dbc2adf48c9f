"""The stand-in's RBAC authorizer follows kubernetes' own rules (sandbox.standins.kubernetes_rbac
cites them), and its watches serve the Python client's `kubernetes.watch.Watch`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from kubernetes import client, watch

from sandbox.standins.kubernetes import KubernetesStandIn
from sandbox.standins.kubernetes_rbac import (
    BOT,
    Attributes,
    Identity,
    Policy,
    forbidden,
    rule_allows,
    shipped_policy,
    verb_of,
)
from tests.standins.test_kubernetes_standin import api_client

ROLE: dict[str, Any] = {
    "kind": "ClusterRole",
    "metadata": {"name": "reader"},
    "rules": [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "deployments/scale"],
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"], "resourceNames": ["one"]},
    ],
}


def test_rules_match_verbs_groups_resources_subresources_and_names() -> None:
    get = Attributes("get", "apps", "deployments", namespace="a", name="web")
    assert rule_allows(ROLE["rules"][0], get)
    assert not rule_allows(ROLE["rules"][0], Attributes("list", "apps", "deployments"))
    assert not rule_allows(ROLE["rules"][0], Attributes("get", "", "deployments"))
    assert rule_allows(ROLE["rules"][0], Attributes("get", "apps", "deployments", "scale"))
    assert not rule_allows(ROLE["rules"][0], Attributes("get", "apps", "deployments", "status"))
    # resourceNames: that name only, and never list/watch/create (they carry no name)
    assert rule_allows(ROLE["rules"][1], Attributes("delete", "", "configmaps", name="one"))
    assert not rule_allows(ROLE["rules"][1], Attributes("delete", "", "configmaps", name="two"))
    assert not rule_allows(ROLE["rules"][1], Attributes("list", "", "configmaps"))
    assert not rule_allows(ROLE["rules"][1], Attributes("create", "", "configmaps", name="one"))


def test_bindings_apply_to_their_subjects_and_a_rolebinding_to_its_namespace() -> None:
    alice = Identity("alice", ("devs", "system:authenticated"))
    policy = Policy(
        [
            ROLE,
            {
                "kind": "RoleBinding",
                "metadata": {"name": "devs-read", "namespace": "shop"},
                "roleRef": {"kind": "ClusterRole", "name": "reader"},
                "subjects": [{"kind": "Group", "name": "devs"}],
            },
        ]
    )
    read = Attributes("get", "apps", "deployments", namespace="shop", name="web")

    assert policy.allows(alice, read)
    assert not policy.allows(alice, Attributes("get", "apps", "deployments", namespace="other"))
    assert not policy.allows(Identity("mallory"), read)


def test_the_shipped_roles_bind_the_bots_service_account_and_nothing_else() -> None:
    policy = shipped_policy()
    patch = Attributes("patch", "apps", "deployments", namespace="shop", name="web")

    assert policy.allows(BOT, patch)
    assert not policy.allows(BOT, Attributes("delete", "apps", "deployments", namespace="shop"))
    assert not policy.allows(BOT, Attributes("get", "", "secrets", namespace="shop", name="x"))
    assert not policy.allows(Identity.service_account("shop", "platform-bot"), patch)
    # bind only on the roles the bot hands out
    assert policy.allows(
        BOT, Attributes("bind", "rbac.authorization.k8s.io", "clusterroles", name="edit")
    )
    assert not policy.allows(
        BOT, Attributes("bind", "rbac.authorization.k8s.io", "clusterroles", name="cluster-admin")
    )
    assert not policy.without_rule("platform-bot-releases", 0).allows(BOT, patch)


def test_verbs_and_the_forbidden_message_as_the_api_server_says_them() -> None:
    assert verb_of("GET", named=True, watch=False) == "get"
    assert verb_of("GET", named=False, watch=False) == "list"
    assert verb_of("GET", named=False, watch=True) == "watch"
    assert verb_of("DELETE", named=False, watch=False) == "deletecollection"

    message, details = forbidden(BOT, Attributes("create", "", "namespaces", name=""))
    assert message == (
        'namespaces is forbidden: User "system:serviceaccount:platform-bot:platform-bot" '
        'cannot create resource "namespaces" in API group "" at the cluster scope'
    )
    assert details == {"kind": "namespaces"}
    message, details = forbidden(
        BOT, Attributes("update", "", "namespaces", "finalize", name="shop")
    )
    assert message.startswith('namespaces "shop" is forbidden: User ')
    assert 'cannot update resource "namespaces/finalize" in API group ""' in message
    assert details == {"kind": "namespaces", "name": "shop"}


async def test_a_403_is_a_status_body_and_watches_serve_the_python_client() -> None:
    async with KubernetesStandIn(
        users={"bot": BOT, "admin": Identity("admin", ("system:masters",))},
        policy=shipped_policy(),
        observe_seconds=0,
    ) as standin:
        headers = {"Authorization": "Bearer bot"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(f"{standin.url}/api/v1/secrets", ssl=standin.client_ssl()) as answer,
        ):
            body = await answer.json()
        assert answer.status == 403
        assert body["kind"] == "Status" and body["reason"] == "Forbidden"
        assert body["code"] == 403 and body["details"] == {"kind": "secrets"}

        api = api_client(standin, "admin")
        core = client.CoreV1Api(api)
        await asyncio.to_thread(
            core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name="a"))
        )
        listed = await asyncio.to_thread(core.list_namespace)

        def stream() -> list[tuple[str, str]]:
            seen = []
            for event in watch.Watch().stream(
                core.list_namespace,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=2,
            ):
                seen.append((event["type"], event["object"].metadata.name))
                if len(seen) == 2:
                    break
            return seen

        watching = asyncio.create_task(asyncio.to_thread(stream))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(
            core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name="b"))
        )
        await asyncio.to_thread(
            core.patch_namespace, "b", {"metadata": {"labels": {"team": "shop"}}}
        )
        assert await watching == [("ADDED", "b"), ("MODIFIED", "b")]
        api.close()


async def test_a_watch_from_a_forgotten_resource_version_is_410() -> None:
    since = "1"
    async with KubernetesStandIn(token="t") as standin:
        standin.watches._dropped_before = 10  # as after many changes
        async with (
            aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as http,
            http.get(
                f"{standin.url}/api/v1/namespaces?watch=true&resourceVersion={since}",
                ssl=standin.client_ssl(),
            ) as answer,
        ):
            body = json.loads(await answer.text())
        assert answer.status == 410
        assert (body["reason"], body["message"]) == (
            "Expired",
            f"too old resource version: {since}",
        )
