"""Rollback and rollout status against a lagging deployment controller, as kubectl does them.

kubectl pkg/polymorphichelpers/rollout_status.go reads nothing of a Deployment's status
until `metadata.generation <= status.observedGeneration`; rollback.go copies the
ReplicaSet's template as it is and restores its annotations. The stand-in's controller
here takes 0.3 s to see each new generation, as a busy real one may.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes import client

from adapters.kubernetes import KubernetesCluster, KubernetesClusters, rollback_annotations
from kernel.ports.systems import NamespaceSpec, RolloutStatus
from sandbox.standins.kubernetes import KubernetesStandIn
from tests.integration.test_kubernetes_adapter import TOKEN, kubeconfig

NS = "payments-checkout-staging"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class Env:
    def __init__(self, standin: KubernetesStandIn, cluster: KubernetesCluster) -> None:
        self.standin = standin
        self.cluster = cluster

    async def wait_for(self, predicate: Callable[[RolloutStatus], bool]) -> RolloutStatus:
        async with asyncio.timeout(5):
            while True:
                status = await self.cluster.rollout_status(NS, "web")
                if predicate(status):
                    return status
                await asyncio.sleep(0.02)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    standin = KubernetesStandIn(
        token=TOKEN,
        rollout_seconds=0.05,
        progress_deadline_seconds=0.3,
        failing_images={"broken"},
        observe_seconds=0.3,
    )
    async with standin:
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig({"blue": standin}, token=TOKEN))
        clusters = KubernetesClusters.from_kubeconfig(str(path))
        cluster = clusters.cluster("blue")
        assert isinstance(cluster, KubernetesCluster)
        try:
            await cluster.ensure_namespace(
                NamespaceSpec(
                    name=NS,
                    team="payments",
                    service="checkout",
                    environment="staging",
                    rbac_group="oidc:payments",
                    service_account="checkout",
                )
            )
            yield Env(standin, cluster)
        finally:
            clusters.close()


def raw_deployment() -> dict[str, Any]:
    """A Deployment as CI/CD applies it, with fields the Python client's models do not
    have (a newer API's), and an annotation of its own."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "annotations": {
                "kubernetes.io/change-cause": "first deploy",
                "example.com/owner": "payments (revision 1)",
                LAST_APPLIED: '{"applied": 1}',
            },
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "futureSchedulingHint": "from-a-newer-api",
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example.com/web:1",
                            "futureProbe": {"grpc": {"port": 9000}},
                        }
                    ],
                },
            },
        },
    }


async def create(env: Env, body: dict[str, Any]) -> None:
    """POST the Deployment as it is, over HTTPS with the token (as CI/CD would)."""
    url = f"{env.standin.url}/apis/apps/v1/namespaces/{NS}/deployments"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers=headers, ssl=env.standin.client_ssl()) as answer,
    ):
        assert answer.status == 201, await answer.text()


def done(revision: int) -> Callable[[RolloutStatus], bool]:
    return lambda status: status.complete and status.revision == revision


async def test_a_rollback_right_after_a_passed_deadline_waits_for_the_controller(
    env: Env,
) -> None:
    await create(env, raw_deployment())
    await env.wait_for(done(1))
    await env.cluster.set_image(
        NS, "web", image="registry.example.com/web:broken", change_cause="deploy broken"
    )
    failed = await env.wait_for(lambda s: s.failed_reason is not None)
    assert failed.revision == 2

    await env.cluster.rollback(NS, "web", to_revision=1, change_cause="rollback to 1")
    stale = await env.cluster.rollout_status(NS, "web")

    # the controller has not seen the rollback: the stale ProgressDeadlineExceeded is still
    # in status, and kubectl would say "Waiting for deployment spec update to be observed"
    stored = env.standin.objects.get("Deployment", NS, "web")
    assert stored is not None
    assert stored["status"]["observedGeneration"] < stored["metadata"]["generation"]
    progressing = [c for c in stored["status"]["conditions"] if c["type"] == "Progressing"]
    assert progressing[0]["reason"] == "ProgressDeadlineExceeded"
    assert (stale.observed, stale.failed_reason, stale.complete) == (False, None, False)

    rolled = await env.wait_for(done(3))
    assert rolled.images == ("registry.example.com/web:1",)
    assert rolled.failed_reason is None


async def test_rollback_keeps_fields_the_client_does_not_know_and_restores_annotations(
    env: Env,
) -> None:
    await create(env, raw_deployment())
    await env.wait_for(done(1))
    # revision 2 is applied with other annotations (kubectl apply rewrites last-applied)
    patch = {
        "metadata": {
            "annotations": {
                "example.com/owner": None,
                "example.com/added-at-2": "yes",
                LAST_APPLIED: '{"applied": 2}',
            }
        }
    }
    await asyncio.to_thread(env.cluster._apps.patch_namespaced_deployment, "web", NS, patch)
    await env.cluster.set_image(NS, "web", image="registry.example.com/web:2", change_cause="v2")
    await env.wait_for(done(2))

    await env.cluster.rollback(NS, "web", to_revision=1, change_cause="rollback to 1 by bob")
    await env.wait_for(done(3))

    stored = env.standin.objects.get("Deployment", NS, "web")
    assert stored is not None
    pod = stored["spec"]["template"]["spec"]
    assert pod["futureSchedulingHint"] == "from-a-newer-api"
    assert pod["containers"][0]["futureProbe"] == {"grpc": {"port": 9000}}
    assert pod["containers"][0]["image"] == "registry.example.com/web:1"
    annotations = stored["metadata"]["annotations"]
    # revision 1's own annotations come back, those added since go; last-applied and the
    # revision are the Deployment's (kubectl rollback.go annotationsToSkip)
    assert annotations["example.com/owner"] == "payments (revision 1)"
    assert "example.com/added-at-2" not in annotations
    assert annotations[LAST_APPLIED] == '{"applied": 2}'
    assert annotations["deployment.kubernetes.io/revision"] == "3"
    assert annotations["kubernetes.io/change-cause"] == "rollback to 1 by bob"

    # what the typed models would have done: the unknown fields are gone
    typed = client.ApiClient().deserialize(  # type: ignore[no-untyped-call]
        json.dumps(stored), "V1Deployment", "application/json"
    )
    assert "futureSchedulingHint" not in str(client.ApiClient().sanitize_for_serialization(typed))


def test_rollback_annotations_follow_kubectl() -> None:
    deployment = {
        "deployment.kubernetes.io/revision": "5",
        LAST_APPLIED: "now",
        "kubernetes.io/change-cause": "deploy 5",
        "example.com/only-now": "x",
    }
    replicaset = {
        "deployment.kubernetes.io/revision": "2",
        "deployment.kubernetes.io/revision-history": "1",
        "deployment.kubernetes.io/desired-replicas": "2",
        "deployment.kubernetes.io/max-replicas": "3",
        LAST_APPLIED: "then",
        "kubernetes.io/change-cause": "deploy 2",
        "example.com/then": "y",
    }

    assert rollback_annotations(deployment, replicaset) == {
        "deployment.kubernetes.io/revision": "5",
        LAST_APPLIED: "now",
        "kubernetes.io/change-cause": "deploy 2",
        "example.com/then": "y",
    }
