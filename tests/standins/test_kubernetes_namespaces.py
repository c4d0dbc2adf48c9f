"""A deleted namespace lives on as the real API server keeps it: Terminating until the
namespace controller has removed its content and its finalizers are done, refusing new
content and a new namespace of the same name meanwhile.

Seen through the official client, and through Debian's kubectl as the oracle of what a
person at a terminal would be told.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from sandbox.standins.kubernetes import KubernetesStandIn
from tests.standins.kubectl import Kubectl
from tests.standins.test_kubernetes_standin import NS, TOKEN, Kube, api_client, status_body

HOLD = "example.com/hold"


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    standin = KubernetesStandIn(token=TOKEN, namespace_deletion_seconds=0.05)
    await standin.start()
    api = api_client(standin, TOKEN)
    try:
        yield Kube(
            standin,
            client.CoreV1Api(api),
            client.AppsV1Api(api),
            client.NetworkingV1Api(api),
            client.RbacAuthorizationV1Api(api),
        )
    finally:
        await asyncio.to_thread(api.close)
        await standin.stop()


def config_map(name: str, finalizers: list[str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, finalizers=finalizers))


def condition(namespace: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in namespace["status"]["conditions"] if c["type"] == kind)


async def gone(kube: Kube, name: str, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if kube.standin.objects.get("Namespace", None, name) is None:
                return
            await asyncio.sleep(0.02)


async def test_a_new_namespace_is_active_with_the_kubernetes_finalizer(kube: Kube) -> None:
    extra = client.V1Namespace(
        metadata=client.V1ObjectMeta(name=NS), spec=client.V1NamespaceSpec(finalizers=[HOLD])
    )
    created = await kube.call(kube.core.create_namespace, extra)
    assert created.status.phase == "Active"
    assert created.spec.finalizers == [HOLD, "kubernetes"]


async def test_a_deleted_namespace_terminates_until_its_content_is_gone(kube: Kube) -> None:
    await kube.call(kube.core.create_namespace, client.V1Namespace(metadata={"name": NS}))
    await kube.call(kube.core.create_namespaced_config_map, NS, config_map("held", [HOLD]))
    await kube.call(kube.core.create_namespaced_config_map, NS, config_map("plain"))

    async def delete() -> tuple[int, dict[str, Any]]:
        raw = await kube.call(kube.core.delete_namespace, NS, _preload_content=False)
        return raw.status, json.loads(raw.data)

    status, answer = await delete()
    assert status == 200 and answer["kind"] == "Namespace"  # the object, not a Status
    assert answer["status"]["phase"] == "Terminating" and answer["metadata"]["deletionTimestamp"]
    assert await delete() == (200, answer)  # a second DELETE answers the same

    def waiting(ns: dict[str, Any]) -> bool:
        return any(
            c["reason"] == "SomeFinalizersRemain" for c in ns["status"].get("conditions", [])
        )

    terminating = await kube.standin.wait_for("Namespace", None, NS, waiting)
    assert terminating["status"]["phase"] == "Terminating"
    assert terminating["spec"]["finalizers"] == ["kubernetes"]
    assert condition(terminating, "NamespaceContentRemaining")["message"] == (
        "Some resources are remaining: configmaps. has 1 resource instances"
    )
    assert condition(terminating, "NamespaceFinalizersRemaining")["message"] == (
        f"Some content in the namespace has finalizers remaining: {HOLD} in 1 resource instances"
    )
    assert condition(terminating, "NamespaceDeletionContentFailure")["status"] == "False"
    held = kube.standin.objects.get("ConfigMap", NS, "held")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    assert kube.standin.objects.get("ConfigMap", NS, "plain") is None

    refused = await kube.error(kube.core.create_namespaced_config_map, NS, config_map("new"))
    assert refused.status == 403
    body = status_body(refused)
    assert body["reason"] == "Forbidden"
    assert body["message"] == (
        'configmaps "new" is forbidden: unable to create new content in namespace '
        f"{NS} because it is being terminated"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": f"namespace {NS} is being terminated",
            "field": "metadata.namespace",
        }
    ]
    recreated = await kube.error(
        kube.core.create_namespace, client.V1Namespace(metadata={"name": NS})
    )
    assert recreated.status == 409
    assert status_body(recreated)["message"] == (
        f'object is being deleted: namespaces "{NS}" already exists'
    )
    labelled = await kube.call(kube.core.patch_namespace, NS, {"metadata": {"labels": {"a": "b"}}})
    assert labelled.status.phase == "Terminating"  # an update neither revives nor ends it

    # the finalizer's owner lets go of the last object: the namespace goes with it
    await kube.call(
        kube.core.patch_namespaced_config_map, "held", NS, {"metadata": {"finalizers": None}}
    )
    await gone(kube, NS)
    assert kube.standin.objects.list("ConfigMap", NS) == []
    await kube.call(kube.core.create_namespace, client.V1Namespace(metadata={"name": NS}))


async def test_another_finalizer_keeps_the_namespace_until_finalize(kube: Kube) -> None:
    body = client.V1Namespace(
        metadata=client.V1ObjectMeta(name=NS), spec=client.V1NamespaceSpec(finalizers=[HOLD])
    )
    await kube.call(kube.core.create_namespace, body)
    await kube.call(kube.core.delete_namespace, NS)

    def finalized_by_kubernetes(ns: dict[str, Any]) -> bool:
        return bool(ns["spec"]["finalizers"] == [HOLD])

    left = await kube.standin.wait_for("Namespace", None, NS, finalized_by_kubernetes)
    assert condition(left, "NamespaceContentRemaining")["reason"] == "ContentRemoved"
    assert left["status"]["phase"] == "Terminating"

    done = client.V1Namespace(
        metadata=client.V1ObjectMeta(name=NS), spec=client.V1NamespaceSpec(finalizers=[])
    )
    await kube.call(kube.core.replace_namespace_finalize, NS, done)
    assert (await kube.error(kube.core.read_namespace, NS)).status == 404


async def test_kubectl_sees_terminating_and_is_refused_in_words(tmp_path: Path) -> None:
    # over HTTPS, with the CA in the kubeconfig: kubectl sends the token
    async with KubernetesStandIn(token=TOKEN, namespace_deletion_seconds=0.05) as standin:
        kubectl = Kubectl(standin, TOKEN, tmp_path)
        assert (await kubectl("create", "namespace", NS))[0] == 0
        assert (await kubectl("create", "configmap", "held", f"-n={NS}"))[0] == 0
        await kubectl(
            "patch",
            "configmap",
            "held",
            f"-n={NS}",
            "--type=merge",
            f'-p={{"metadata":{{"finalizers":["{HOLD}"]}}}}',
        )
        assert (await kubectl("delete", "namespace", NS, "--wait=false"))[0] == 0

        code, phase, _ = await kubectl("get", "namespace", NS, "-o", "jsonpath={.status.phase}")
        assert (code, phase) == (0, "Terminating")
        code, _, said = await kubectl("create", "configmap", "new", f"-n={NS}")
        assert code == 1
        assert said.strip() == (
            'error: failed to create configmap: configmaps "new" is forbidden: unable to create '
            f"new content in namespace {NS} because it is being terminated"
        )
