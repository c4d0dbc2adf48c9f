"""The Kubernetes stand-in answers as the API server documents, seen through the real client.

Every test talks to the stand-in with the official ``kubernetes`` client, unchanged: the
client is blocking, so its calls run in a thread (``asyncio.to_thread``) while the
stand-in and its deployment controller run on the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sandbox.standins.kubernetes import REVISION, KubernetesStandIn

TOKEN = "standin-token"
NS = "team-a"
T = TypeVar("T")


@dataclass
class Kube:
    """The stand-in and the real client's APIs pointed at it."""

    standin: KubernetesStandIn
    core: client.CoreV1Api
    apps: client.AppsV1Api
    networking: client.NetworkingV1Api
    rbac: client.RbacAuthorizationV1Api

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def error(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> ApiException:
        """The ApiException the call raises (fails the test if it succeeds)."""
        with pytest.raises(ApiException) as caught:
            await self.call(fn, *args, **kwargs)
        return caught.value


def status_body(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == error.status
    return body


def api_client(standin: KubernetesStandIn, token: str | None) -> client.ApiClient:
    """The official client on the stand-in: its URL, trusting the CA it made at start."""
    config = client.Configuration(host=standin.url)
    config.ssl_ca_cert = str(standin.ca_file) if standin.ca_file else None
    if token is not None:
        config.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(config)


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    standin = KubernetesStandIn(
        token=TOKEN,
        rollout_seconds=0.1,
        time_scale=0.001,  # the default progressDeadlineSeconds of 600 becomes 0.6 s
        failing_images={"broken"},
        observe_seconds=0,  # the controller sees each write at once (its lag: test_kubectl)
    )
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


def namespace(name: str, labels: dict[str, str] | None = None) -> client.V1Namespace:
    return client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))


async def make_namespace(kube: Kube, name: str = NS) -> None:
    await kube.call(kube.core.create_namespace, namespace(name))


def deployment(
    image: str, *, replicas: int = 2, change_cause: str | None = None
) -> client.V1Deployment:
    annotations = {"kubernetes.io/change-cause": change_cause} if change_cause else None
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web", annotations=annotations),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels={"app": "web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="app", image=image)]),
            ),
        ),
    )


def image_patch(image: str, change_cause: str) -> dict[str, Any]:
    """A strategic merge patch, as ``kubectl set image`` + ``--record`` would send."""
    return {
        "metadata": {"annotations": {"kubernetes.io/change-cause": change_cause}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
    }


def condition(dep: client.V1Deployment, kind: str) -> client.V1DeploymentCondition | None:
    return next((c for c in dep.status.conditions or [] if c.type == kind), None)


async def rollout_reason(kube: Kube, reason: str, within: float = 5.0) -> client.V1Deployment:
    """Read the Deployment until its Progressing condition has ``reason``."""
    async with asyncio.timeout(within):
        while True:
            dep = await kube.call(kube.apps.read_namespaced_deployment, "web", NS)
            progressing = condition(dep, "Progressing")
            if progressing is not None and progressing.reason == reason:
                return dep
            await asyncio.sleep(0.02)


async def replicasets(kube: Kube) -> dict[str, client.V1ReplicaSet]:
    """The Deployment's ReplicaSets by revision."""
    found = await kube.call(kube.apps.list_namespaced_replica_set, NS, label_selector="app=web")
    return {rs.metadata.annotations[REVISION]: rs for rs in found.items}


# --- objects, metadata and errors ------------------------------------------------------


async def test_create_namespace_answers_201_with_server_metadata(kube: Kube) -> None:
    created, status, _ = await kube.call(kube.core.create_namespace_with_http_info, namespace(NS))

    assert status == 201
    assert created.metadata.uid
    assert created.metadata.resource_version
    assert created.metadata.creation_timestamp is not None
    assert created.status.phase == "Active"
    read = await kube.call(kube.core.read_namespace, NS)
    assert read.metadata.uid == created.metadata.uid


async def test_creating_twice_is_409_already_exists(kube: Kube) -> None:
    await make_namespace(kube)

    error = await kube.error(kube.core.create_namespace, namespace(NS))

    assert error.status == 409
    body = status_body(error)
    assert body["reason"] == "AlreadyExists"
    assert body["message"] == f'namespaces "{NS}" already exists'
    assert body["details"] == {"name": NS, "kind": "namespaces"}


async def test_reading_a_missing_object_is_404_not_found(kube: Kube) -> None:
    await make_namespace(kube)

    error = await kube.error(kube.apps.read_namespaced_deployment, "nope", NS)

    assert error.status == 404
    body = status_body(error)
    assert body["reason"] == "NotFound"
    assert body["message"] == 'deployments.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


async def test_list_filters_by_label_selector(kube: Kube) -> None:
    for name, labels in [
        ("a", {"team": "pay", "tier": "web"}),
        ("b", {"team": "pay", "tier": "db"}),
        ("c", {"team": "search", "tier": "web", "legacy": "yes"}),
    ]:
        await kube.call(kube.core.create_namespace, namespace(name, labels))

    async def names(selector: str) -> list[str]:
        found = await kube.call(kube.core.list_namespace, label_selector=selector)
        return [ns.metadata.name for ns in found.items]

    assert await names("team=pay") == ["a", "b"]
    assert await names("team==pay,tier!=db") == ["a"]
    assert await names("tier in (web, db),!legacy") == ["a", "b"]
    assert await names("team notin (pay)") == ["c"]
    assert await names("legacy") == ["c"]
    error = await kube.error(kube.core.list_namespace, label_selector="team in pay")
    assert error.status == 400
    assert status_body(error)["reason"] == "BadRequest"


async def test_namespaced_objects_of_each_kind(kube: Kube) -> None:
    await make_namespace(kube)

    await kube.call(
        kube.core.create_namespaced_service_account,
        NS,
        client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="deployer")),
    )
    await kube.call(
        kube.core.create_namespaced_resource_quota,
        NS,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="quota"),
            spec=client.V1ResourceQuotaSpec(hard={"pods": "10"}),
        ),
    )
    await kube.call(
        kube.core.create_namespaced_limit_range,
        NS,
        client.V1LimitRange(
            metadata=client.V1ObjectMeta(name="limits"),
            spec=client.V1LimitRangeSpec(
                limits=[client.V1LimitRangeItem(type="Container", default={"cpu": "500m"})]
            ),
        ),
    )
    policy = await kube.call(
        kube.networking.create_namespaced_network_policy,
        NS,
        client.V1NetworkPolicy(
            metadata=client.V1ObjectMeta(name="deny-all"),
            spec=client.V1NetworkPolicySpec(
                pod_selector=client.V1LabelSelector(), policy_types=["Ingress"]
            ),
        ),
    )
    await kube.call(
        kube.rbac.create_namespaced_role_binding,
        NS,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="deployers"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="edit"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="deployer", namespace=NS)],
        ),
    )
    secret = await kube.call(
        kube.core.create_namespaced_secret,
        NS,
        client.V1Secret(metadata=client.V1ObjectMeta(name="db"), string_data={"password": "pw"}),
    )

    assert policy.metadata.namespace == NS
    assert policy.metadata.generation == 1
    assert secret.data == {"password": "cHc="}  # stringData is stored base64 in data
    assert secret.string_data is None
    binding = await kube.call(kube.rbac.read_namespaced_role_binding, "deployers", NS)
    assert binding.role_ref.name == "edit"
    assert binding.subjects[0].name == "deployer"
    quota = kube.standin.objects.get("ResourceQuota", NS, "quota")
    assert quota is not None and quota["spec"]["hard"] == {"pods": "10"}
    assert [sa["metadata"]["name"] for sa in kube.standin.objects.list("serviceaccounts")] == [
        "deployer"
    ]


async def test_creating_in_a_missing_namespace_is_404_for_the_namespace(kube: Kube) -> None:
    error = await kube.error(
        kube.core.create_namespaced_config_map,
        "ghost",
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings")),
    )

    assert error.status == 404
    body = status_body(error)
    assert body["reason"] == "NotFound"
    assert body["message"] == 'namespaces "ghost" not found'
    assert body["details"] == {"name": "ghost", "kind": "namespaces"}


async def test_replace_with_a_stale_resource_version_is_409_conflict(kube: Kube) -> None:
    await make_namespace(kube)
    original = await kube.call(
        kube.core.create_namespaced_config_map,
        NS,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"}),
    )
    original.data = {"a": "2"}
    updated = await kube.call(kube.core.replace_namespaced_config_map, "settings", NS, original)
    assert updated.metadata.resource_version != original.metadata.resource_version
    assert updated.metadata.uid == original.metadata.uid

    original.data = {"a": "3"}  # still carries the first resourceVersion
    error = await kube.error(kube.core.replace_namespaced_config_map, "settings", NS, original)

    assert error.status == 409
    body = status_body(error)
    assert body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]
    assert body["details"] == {"name": "settings", "kind": "configmaps"}
    current = await kube.call(kube.core.read_namespaced_config_map, "settings", NS)
    assert current.data == {"a": "2"}


async def test_an_invalid_name_is_422_invalid(kube: Kube) -> None:
    error = await kube.error(kube.core.create_namespace, namespace("Team_A"))

    assert error.status == 422
    body = status_body(error)
    assert body["reason"] == "Invalid"
    assert body["message"].startswith('Namespace "Team_A" is invalid: metadata.name: Invalid')
    assert body["details"]["kind"] == "Namespace"
    assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_a_wrong_token_is_401_and_failures_can_be_injected(kube: Kube) -> None:
    stranger = api_client(kube.standin, "not-the-token")
    try:
        error = await kube.error(client.CoreV1Api(stranger).list_namespace)
    finally:
        await asyncio.to_thread(stranger.close)
    assert error.status == 401
    assert status_body(error)["reason"] == "Unauthorized"

    kube.standin.fail_next("GET", "/api/v1/namespaces", 503)
    error = await kube.error(kube.core.list_namespace)
    assert error.status == 503
    assert status_body(error)["reason"] == "ServiceUnavailable"
    await kube.call(kube.core.list_namespace)  # only the next one failed
    assert [(r.method, r.path, r.status) for r in kube.standin.requests[-3:]] == [
        ("GET", "/api/v1/namespaces", 401),
        ("GET", "/api/v1/namespaces", 503),
        ("GET", "/api/v1/namespaces", 200),
    ]


async def test_discovery_and_deleting_a_namespace(kube: Kube) -> None:
    api = kube.core.api_client
    version = await kube.call(client.VersionApi(api).get_code)
    groups = await kube.call(client.ApisApi(api).get_api_versions)
    assert version.major == "1"
    assert {g.name for g in groups.groups} == {
        "apps",
        "authorization.k8s.io",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
    }
    await make_namespace(kube)
    await kube.call(
        kube.core.create_namespaced_config_map,
        NS,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings")),
    )

    await kube.call(kube.core.delete_namespace, NS)

    async with asyncio.timeout(5):  # Terminating first, gone once its content is
        while True:
            if kube.standin.objects.get("Namespace", None, NS) is None:
                break
            await asyncio.sleep(0.02)
    assert (await kube.error(kube.core.read_namespace, NS)).status == 404
    assert kube.standin.objects.list("ConfigMap") == []


# --- the deployment controller ---------------------------------------------------------


async def test_a_deployment_rolls_out_revision_1(kube: Kube) -> None:
    await make_namespace(kube)

    created = await kube.call(
        kube.apps.create_namespaced_deployment, NS, deployment("web:1", change_cause="v1")
    )
    assert created.metadata.generation == 1
    assert created.metadata.annotations[REVISION] == "1"

    done = await rollout_reason(kube, "NewReplicaSetAvailable")
    assert done.status.observed_generation == 1
    assert done.status.replicas == 2
    assert done.status.updated_replicas == 2
    assert done.status.ready_replicas == 2
    assert done.status.available_replicas == 2
    available = condition(done, "Available")
    assert available is not None and available.status == "True"
    sets = await replicasets(kube)
    assert list(sets) == ["1"]
    rs = sets["1"]
    assert rs.metadata.owner_references[0].uid == created.metadata.uid
    assert rs.metadata.annotations["kubernetes.io/change-cause"] == "v1"
    assert rs.spec.template.metadata.labels["pod-template-hash"]
    assert rs.status.ready_replicas == 2


async def test_a_new_image_makes_revision_2_and_scales_the_old_set_to_0(kube: Kube) -> None:
    await make_namespace(kube)
    await kube.call(kube.apps.create_namespaced_deployment, NS, deployment("web:1"))
    await rollout_reason(kube, "NewReplicaSetAvailable")

    patched = await kube.call(
        kube.apps.patch_namespaced_deployment, "web", NS, image_patch("web:2", "to v2")
    )
    assert patched.metadata.generation == 2
    assert patched.metadata.annotations[REVISION] == "2"
    assert patched.spec.template.spec.containers[0].image == "web:2"

    done = await rollout_reason(kube, "NewReplicaSetAvailable")
    assert done.status.observed_generation == 2
    assert (done.status.replicas, done.status.ready_replicas) == (2, 2)
    sets = await replicasets(kube)
    assert sorted(sets) == ["1", "2"]
    assert sets["2"].spec.template.spec.containers[0].image == "web:2"
    assert sets["2"].metadata.annotations["kubernetes.io/change-cause"] == "to v2"
    assert sets["1"].spec.replicas == 0
    assert not sets["1"].status.ready_replicas

    # back to the first template: its ReplicaSet is reused as revision 3 (rollout undo)
    await kube.call(kube.apps.patch_namespaced_deployment, "web", NS, image_patch("web:1", "undo"))
    await rollout_reason(kube, "NewReplicaSetAvailable")
    sets = await replicasets(kube)
    assert sorted(sets) == ["2", "3"]
    assert sets["3"].spec.template.spec.containers[0].image == "web:1"
    assert sets["3"].metadata.annotations["deployment.kubernetes.io/revision-history"] == "1"


async def test_an_image_that_fails_to_pull_exceeds_the_progress_deadline(kube: Kube) -> None:
    await make_namespace(kube)
    await kube.call(kube.apps.create_namespaced_deployment, NS, deployment("web:1"))
    await rollout_reason(kube, "NewReplicaSetAvailable")

    await kube.call(
        kube.apps.patch_namespaced_deployment, "web", NS, image_patch("web:broken", "bad")
    )

    waiting = await rollout_reason(kube, "NewReplicaSetCreated")  # before the deadline
    progressing = condition(waiting, "Progressing")
    assert progressing is not None and progressing.status == "True"
    assert waiting.status.ready_replicas == 2

    stuck = await rollout_reason(kube, "ProgressDeadlineExceeded")
    progressing = condition(stuck, "Progressing")
    assert progressing is not None and progressing.status == "False"
    assert "has timed out progressing" in progressing.message
    assert stuck.status.ready_replicas == 2  # the old pods still serve
    assert stuck.status.updated_replicas == 2
    sets = await replicasets(kube)
    assert sets["1"].status.ready_replicas == 2
    assert not sets["2"].status.ready_replicas


async def test_scaling_keeps_the_revision(kube: Kube) -> None:
    await make_namespace(kube)
    await kube.call(kube.apps.create_namespaced_deployment, NS, deployment("web:1"))
    await rollout_reason(kube, "NewReplicaSetAvailable")

    await kube.call(kube.apps.patch_namespaced_deployment, "web", NS, {"spec": {"replicas": 4}})

    async with asyncio.timeout(5):
        while True:
            dep = await kube.call(kube.apps.read_namespaced_deployment, "web", NS)
            if dep.status.observed_generation == 2 and dep.status.ready_replicas == 4:
                break
            await asyncio.sleep(0.02)
    assert dep.metadata.annotations[REVISION] == "1"
    sets = await replicasets(kube)
    assert list(sets) == ["1"]
    assert sets["1"].spec.replicas == 4


async def test_deleting_a_deployment_deletes_its_replicasets(kube: Kube) -> None:
    await make_namespace(kube)
    created = await kube.call(kube.apps.create_namespaced_deployment, NS, deployment("web:1"))

    await kube.call(kube.apps.delete_namespaced_deployment, "web", NS)

    error = await kube.error(kube.apps.read_namespaced_deployment, "web", NS)
    assert error.status == 404
    assert await replicasets(kube) == {}
    assert kube.standin.objects.get("Deployment", NS, "web") is None
    assert created.metadata.uid


async def test_a_rolebindings_role_ref_cannot_change(kube: Kube) -> None:
    """kubernetes pkg/apis/rbac/validation/validation.go, ValidateRoleBindingUpdate: a
    changed roleRef is 422 Invalid "cannot change roleRef"; subjects may change."""
    await make_namespace(kube)
    body = client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="temp"),
        role_ref=client.V1RoleRef(
            api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"
        ),
        subjects=[
            client.RbacV1Subject(kind="User", name="a", api_group="rbac.authorization.k8s.io")
        ],
    )
    await kube.call(kube.rbac.create_namespaced_role_binding, NS, body)
    body.subjects[0].name = "b"
    updated = await kube.call(kube.rbac.replace_namespaced_role_binding, "temp", NS, body)
    assert updated.subjects[0].name == "b"
    body.role_ref.name = "edit"
    error = await kube.error(kube.rbac.replace_namespaced_role_binding, "temp", NS, body)
    status = status_body(error)
    assert error.status == 422 and status["reason"] == "Invalid"
    assert status["message"].startswith('RoleBinding "temp" is invalid: roleRef: Invalid value')
    assert status["message"].endswith("cannot change roleRef")
    assert status["details"]["group"] == "rbac.authorization.k8s.io"
    still = await kube.call(kube.rbac.read_namespaced_role_binding, "temp", NS)
    assert still.role_ref.name == "view"


async def test_ingresses_are_networking_v1_namespaced_with_a_generation(kube: Kube) -> None:
    """networking.k8s.io/v1 Ingress (kubernetes.io/docs/reference/kubernetes-api/
    service-resources/ingress-v1/): created 201 with generation 1, read back as sent,
    a second create 409, a spec change bumps the generation
    (pkg/registry/networking/ingress/strategy.go), gone with its namespace."""
    await make_namespace(kube)
    backend = client.V1IngressBackend(
        service=client.V1IngressServiceBackend(
            name="web", port=client.V1ServiceBackendPort(number=8080)
        )
    )
    rule = client.V1IngressRule(
        host="web.envs.example.com",
        http=client.V1HTTPIngressRuleValue(
            paths=[client.V1HTTPIngressPath(path="/", path_type="Prefix", backend=backend)]
        ),
    )
    body = client.V1Ingress(
        metadata=client.V1ObjectMeta(name="web"), spec=client.V1IngressSpec(rules=[rule])
    )
    made = await kube.call(kube.networking.create_namespaced_ingress, NS, body)
    assert made.metadata.generation == 1
    read = await kube.call(kube.networking.read_namespaced_ingress, "web", NS)
    assert read.spec.rules[0].host == "web.envs.example.com"
    assert read.spec.rules[0].http.paths[0].backend.service.port.number == 8080
    again = await kube.error(kube.networking.create_namespaced_ingress, NS, body)
    assert again.status == 409
    patch = {"spec": {"rules": [{"host": "other.envs.example.com"}]}}
    patched = await kube.call(kube.networking.patch_namespaced_ingress, "web", NS, patch)
    assert patched.metadata.generation == 2
    listed = await kube.call(kube.networking.list_namespaced_ingress, NS)
    assert [i.metadata.name for i in listed.items] == ["web"]
