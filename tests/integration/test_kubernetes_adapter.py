"""The Kubernetes adapter against the Kubernetes stand-in, over HTTP, through a kubeconfig.

Every test loads `KubernetesClusters` from a temporary kubeconfig with two contexts
("blue" and "green"), each pointing at its own stand-in with token auth. Deployments are
made with the official client directly (the adapter never creates them; CI/CD does).
The stand-ins roll out in 0.05 s, and an image tagged "broken" never becomes ready,
so its rollout passes its progress deadline (600 s scaled down to 0.6 s).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from kubernetes import client

from adapters.kubernetes import KubernetesCluster, KubernetesClusters
from kernel.errors import AdapterError
from kernel.ports.systems import NamespaceSpec, RolloutStatus, WorkloadSpec
from sandbox.standins.kubernetes import KubernetesStandIn

TOKEN = "kube-test-token"
HOLD = "example.com/hold"
NS = "payments-checkout-prod"


def kubeconfig(servers: dict[str, KubernetesStandIn], token: str = TOKEN) -> str:
    """A kubeconfig (JSON is valid YAML) with one context and cluster per server (each
    with its URL and the CA it made at start, as `certificate-authority-data`)."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": n, "cluster": server.kubeconfig_cluster()} for n, server in servers.items()
            ],
            "users": [{"name": "bot", "user": {"token": token}}],
            "contexts": [{"name": n, "context": {"cluster": n, "user": "bot"}} for n in servers],
            "current-context": next(iter(servers)),
        }
    )


@dataclass
class Env:
    blue: KubernetesStandIn
    green: KubernetesStandIn
    clusters: KubernetesClusters
    kubeconfig: Path
    setup: client.AppsV1Api
    """The real client on "blue", for what the adapter does not do (making Deployments)."""

    @property
    def cluster(self) -> KubernetesCluster:
        found = self.clusters.cluster("blue")
        assert isinstance(found, KubernetesCluster)
        return found


def standin() -> KubernetesStandIn:
    return KubernetesStandIn(
        token=TOKEN, rollout_seconds=0.05, time_scale=0.001, failing_images={"broken"}
    )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with standin() as blue, standin() as green:
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig({"blue": blue, "green": green}))
        clusters = KubernetesClusters.from_kubeconfig(str(path))
        config = client.Configuration(host=blue.url)
        config.ssl_ca_cert = str(blue.ca_file)
        config.api_key = {"authorization": f"Bearer {TOKEN}"}
        setup_api = client.ApiClient(config)
        try:
            yield Env(blue, green, clusters, path, client.AppsV1Api(setup_api))
        finally:
            clusters.close()
            setup_api.close()


def spec(name: str = NS) -> NamespaceSpec:
    return NamespaceSpec(
        name=name,
        team="payments",
        service="checkout",
        environment="prod",
        rbac_group="oidc:payments",
        service_account="checkout",
    )


async def make_deployment(
    env: Env,
    name: str = "web",
    *,
    images: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    change_cause: str = "first deploy",
) -> None:
    """A Deployment (with its namespace) made with the real client, as CI/CD would."""
    if env.blue.objects.get("Namespace", None, NS) is None:
        await env.cluster.ensure_namespace(spec())
    labels = {"app": name, **(labels or {})}
    containers = [
        client.V1Container(name=c, image=image)
        for c, image in (images or {"app": "registry.example.com/web:1"}).items()
    ]
    body = client.V1Deployment(
        metadata=client.V1ObjectMeta(
            name=name, labels=labels, annotations={"kubernetes.io/change-cause": change_cause}
        ),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=containers),
            ),
        ),
    )
    await asyncio.to_thread(env.setup.create_namespaced_deployment, NS, body)


async def wait_for(
    env: Env, predicate: Callable[[RolloutStatus], bool], name: str = "web"
) -> RolloutStatus:
    """Poll rollout_status until `predicate` holds (5 s at most)."""
    async with asyncio.timeout(5):
        while True:
            status = await env.cluster.rollout_status(NS, name)
            if predicate(status):
                return status
            await asyncio.sleep(0.02)


def done(revision: int) -> Callable[[RolloutStatus], bool]:
    return lambda status: status.complete and status.revision == revision


def posts(standin: KubernetesStandIn) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in standin.requests if r.method == "POST"]


# -- clusters from a kubeconfig ----------------------------------------------------


async def test_each_context_reaches_its_own_cluster(env: Env) -> None:
    assert env.clusters.contexts() == ["blue", "green"]

    await env.clusters.cluster("green").ensure_namespace(spec("only-green"))

    assert env.green.objects.get("Namespace", None, "only-green") is not None
    assert env.blue.objects.get("Namespace", None, "only-green") is None
    assert env.blue.requests == []


async def test_only_the_named_contexts_are_loaded(env: Env) -> None:
    green_only = KubernetesClusters.from_kubeconfig(str(env.kubeconfig), contexts=["green"])
    try:
        assert green_only.contexts() == ["green"]
        with pytest.raises(AdapterError) as unknown:
            green_only.cluster("blue")
        assert unknown.value.message == "no cluster context 'blue'; known: green"
    finally:
        green_only.close()

    with pytest.raises(AdapterError) as missing:
        KubernetesClusters.from_kubeconfig(str(env.kubeconfig), contexts=["green", "prod-eu"])
    assert "context prod-eu is not in" in missing.value.message
    assert "known: blue, green" in missing.value.message


async def test_an_unknown_context_names_the_known_ones(env: Env) -> None:
    with pytest.raises(AdapterError) as caught:
        env.clusters.cluster("prod-eu")
    assert caught.value.system == "Kubernetes"
    assert caught.value.message == "no cluster context 'prod-eu'; known: blue, green"


async def test_a_missing_kubeconfig_or_pod_config_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(AdapterError) as missing:
        KubernetesClusters.from_kubeconfig(str(tmp_path / "nope"))
    assert missing.value.message.startswith(f"cannot read {tmp_path / 'nope'}")

    # in a pod (KUBERNETES_SERVICE_HOST set) without a kubeconfig: the service account
    # files are not on this machine, so the in-cluster config cannot load
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(AdapterError) as in_pod:
        KubernetesClusters.from_kubeconfig(None)
    assert in_pod.value.message.startswith("cannot use the in-cluster config")


async def test_a_wrong_token_and_an_unreachable_cluster(tmp_path: Path) -> None:
    async with standin() as server:
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig({"c": server}, token="wrong"))
        clusters = KubernetesClusters.from_kubeconfig(str(path))
        try:
            with pytest.raises(AdapterError) as refused:
                await clusters.cluster("c").describe_namespace("x")
        finally:
            clusters.close()
        assert refused.value.status == 401
        assert refused.value.message == "reading namespace x failed: Unauthorized"
        assert "wrong" not in str(refused.value)
        url = server.url
    gone = KubernetesCluster(client.ApiClient(client.Configuration(host=url)), name="gone")
    try:
        with pytest.raises(AdapterError) as unreachable:
            await gone.delete_namespace("x")
    finally:
        gone.close()
    assert unreachable.value.message.startswith(
        "deleting namespace x failed: cannot reach cluster gone"
    )


# -- namespaces --------------------------------------------------------------------


async def test_ensure_namespace_creates_everything_then_nothing(env: Env) -> None:
    created = await env.cluster.ensure_namespace(spec())

    assert created == [
        f"Namespace/{NS}",
        "ResourceQuota/platform-quota",
        "LimitRange/platform-limits",
        "NetworkPolicy/default-deny",
        "RoleBinding/team-edit",
        "ServiceAccount/checkout",
    ]
    objects = env.blue.objects
    namespace = objects.get("Namespace", None, NS)
    assert namespace is not None
    assert namespace["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "platform-bot",
        "platform.example.com/team": "payments",
        "platform.example.com/service": "checkout",
        "platform.example.com/environment": "prod",
    }
    quota = objects.get("ResourceQuota", NS, "platform-quota")
    assert quota is not None and quota["spec"]["hard"]["limits.memory"] == "8Gi"
    limits = objects.get("LimitRange", NS, "platform-limits")
    assert limits is not None
    assert limits["spec"]["limits"] == [
        {
            "type": "Container",
            "default": {"cpu": "500m", "memory": "512Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
        }
    ]
    deny = objects.get("NetworkPolicy", NS, "default-deny")
    assert deny is not None
    assert deny["spec"]["podSelector"] == {}
    assert deny["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny["spec"]  # no ingress rule: all ingress denied
    [dns] = deny["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    binding = objects.get("RoleBinding", NS, "team-edit")
    assert binding is not None
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "edit",
    }
    assert binding["subjects"] == [
        {"kind": "Group", "name": "oidc:payments", "apiGroup": "rbac.authorization.k8s.io"}
    ]
    assert objects.get("ServiceAccount", NS, "checkout") is not None

    before = len(posts(env.blue))
    assert await env.cluster.ensure_namespace(spec()) == []
    again = posts(env.blue)[before:]
    assert again and all(status == 409 for _, status in again)  # tried, all existed


async def test_ensure_namespace_labels_a_namespace_that_existed(env: Env) -> None:
    core = client.CoreV1Api(env.setup.api_client)
    bare = client.V1Namespace(metadata=client.V1ObjectMeta(name=NS, labels={"keep": "me"}))
    await asyncio.to_thread(core.create_namespace, bare)

    created = await env.cluster.ensure_namespace(spec())

    assert f"Namespace/{NS}" not in created
    assert len(created) == 5
    state = await env.cluster.describe_namespace(NS)
    assert state is not None
    assert state.labels["keep"] == "me"
    assert state.labels["platform.example.com/service"] == "checkout"


async def test_describe_and_delete_namespace(env: Env) -> None:
    assert await env.cluster.describe_namespace(NS) is None
    await env.cluster.ensure_namespace(spec())

    state = await env.cluster.describe_namespace(NS)

    assert state is not None
    assert state.name == NS
    assert state.objects == {
        "ResourceQuota": ["platform-quota"],
        "LimitRange": ["platform-limits"],
        "NetworkPolicy": ["default-deny"],
        "RoleBinding": ["team-edit"],
        "ServiceAccount": ["checkout"],
    }
    assert state.phase == "Active" and not state.terminating
    assert await env.cluster.delete_namespace(NS) is True
    async with asyncio.timeout(5):  # Terminating a moment, then gone
        while True:
            if await env.cluster.describe_namespace(NS) is None:
                break
            await asyncio.sleep(0.02)
    assert await env.cluster.delete_namespace(NS) is False


async def test_a_terminating_namespace_is_described_and_refused_in_words(env: Env) -> None:
    await env.cluster.ensure_namespace(spec())
    core = client.CoreV1Api(env.setup.api_client)
    held = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="held", finalizers=[HOLD]))
    await asyncio.to_thread(core.create_namespaced_config_map, NS, held)

    assert await env.cluster.delete_namespace(NS) is True
    assert await env.cluster.delete_namespace(NS) is True  # still there, Terminating

    async with asyncio.timeout(5):  # until the namespace controller has had its go
        while True:
            state = await env.cluster.describe_namespace(NS)
            assert state is not None and state.terminating
            if state.waiting_for and "finalizers remaining" in state.waiting_for:
                break
            await asyncio.sleep(0.02)
    assert state.deleting_since is not None
    assert state.waiting_for == (
        "Some resources are remaining: configmaps. has 1 resource instances; Some content in "
        f"the namespace has finalizers remaining: {HOLD} in 1 resource instances"
    )
    with pytest.raises(AdapterError) as refused:
        await env.cluster.ensure_namespace(spec())
    assert refused.value.message == (
        f"namespace {NS} is still being deleted (Terminating since "
        f"{state.deleting_since:%H:%M} UTC); nothing can be created in it, and it can be made "
        "again once Kubernetes has removed it"
    )

    patch = {"metadata": {"finalizers": None}}
    await asyncio.to_thread(core.patch_namespaced_config_map, "held", NS, patch)
    async with asyncio.timeout(5):
        while True:
            if await env.cluster.describe_namespace(NS) is None:
                break
            await asyncio.sleep(0.02)
    assert await env.cluster.ensure_namespace(spec())  # the name is free again


async def test_server_errors_carry_the_status_message(env: Env) -> None:
    env.blue.fail_next("POST", "/api/v1/namespaces", 500)
    with pytest.raises(AdapterError) as failed:
        await env.cluster.ensure_namespace(spec())
    assert failed.value.status == 500
    assert failed.value.message == (
        f"creating namespace {NS} failed: injected failure: InternalError"
    )

    # the step runs again after the failure and finishes the job
    assert len(await env.cluster.ensure_namespace(spec())) == 6

    with pytest.raises(AdapterError) as invalid:
        await env.cluster.ensure_namespace(spec("Not_A_Name"))
    assert invalid.value.status == 422
    assert 'Namespace "Not_A_Name" is invalid' in invalid.value.message


# -- deployments -------------------------------------------------------------------


async def test_deployments_by_label_selector(env: Env) -> None:
    await make_deployment(env, "web", labels={"app.kubernetes.io/name": "checkout"})
    await make_deployment(env, "worker", labels={"app.kubernetes.io/name": "checkout"})
    await make_deployment(env, "indexer", labels={"app.kubernetes.io/name": "search"})

    checkout = await env.cluster.deployments(NS, selector="app.kubernetes.io/name=checkout")
    assert [d.deployment for d in checkout] == ["web", "worker"]
    both = await env.cluster.deployments(
        NS, selector="app.kubernetes.io/name in (checkout,search),app!=worker"
    )
    assert [d.deployment for d in both] == ["indexer", "web"]
    assert await env.cluster.deployments(NS, selector="app.kubernetes.io/name=nope") == []

    with pytest.raises(AdapterError) as bad:
        await env.cluster.deployments(NS, selector="a in (")
    assert bad.value.status == 400


async def test_a_new_deployment_rolls_out_to_complete(env: Env) -> None:
    await make_deployment(env)

    status = await wait_for(env, lambda s: s.complete)

    assert status == RolloutStatus(
        deployment="web",
        revision=1,
        images=("registry.example.com/web:1",),
        desired=2,
        updated=2,
        ready=2,
        available=2,
        complete=True,
        failed_reason=None,
    )


async def test_deploy_then_roll_back_keeps_a_meaningful_history(env: Env) -> None:
    await make_deployment(env, change_cause="first deploy")
    await wait_for(env, done(1))

    await env.cluster.set_image(
        NS, "web", image="registry.example.com/web:2", change_cause="deploy 2 by alice"
    )
    deployed = await wait_for(env, done(2))
    assert deployed.images == ("registry.example.com/web:2",)

    history = await env.cluster.revisions(NS, "web")
    assert [(r.number, r.images, r.change_cause) for r in history] == [
        (1, ("registry.example.com/web:1",), "first deploy"),
        (2, ("registry.example.com/web:2",), "deploy 2 by alice"),
    ]
    assert all(isinstance(r.created_at, datetime) for r in history)
    assert history[0].replicaset != history[1].replicaset

    await env.cluster.rollback(NS, "web", to_revision=1, change_cause="rollback to 1 by bob")
    rolled = await wait_for(env, done(3))

    assert rolled.images == ("registry.example.com/web:1",)
    history = await env.cluster.revisions(NS, "web")
    # revision 1's ReplicaSet came back as revision 3, as with `kubectl rollout undo`
    assert [(r.number, r.images, r.change_cause) for r in history] == [
        (2, ("registry.example.com/web:2",), "deploy 2 by alice"),
        (3, ("registry.example.com/web:1",), "rollback to 1 by bob"),
    ]
    deployment = env.blue.objects.get("Deployment", NS, "web")
    assert deployment is not None
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "pod-template-hash" not in template_labels
    assert deployment["metadata"]["annotations"]["kubernetes.io/change-cause"] == (
        "rollback to 1 by bob"
    )

    # rolling back to what already runs changes nothing
    patches = sum(r.method == "PATCH" for r in env.blue.requests)
    await env.cluster.rollback(NS, "web", to_revision=3, change_cause="again")
    assert sum(r.method == "PATCH" for r in env.blue.requests) == patches


async def test_rollback_to_an_unknown_revision(env: Env) -> None:
    await make_deployment(env)
    await wait_for(env, done(1))
    await env.cluster.set_image(NS, "web", image="web:2", change_cause="deploy 2")
    await wait_for(env, done(2))

    with pytest.raises(AdapterError) as caught:
        await env.cluster.rollback(NS, "web", to_revision=7, change_cause="x")

    assert caught.value.message == f"revision 7 of {NS}/web not found; known: 1, 2"
    with pytest.raises(AdapterError) as missing:
        await env.cluster.rollback(NS, "nope", to_revision=1, change_cause="x")
    assert missing.value.status == 404
    assert missing.value.message == (
        f'rolling back {NS}/nope to revision 1 failed: deployments.apps "nope" not found'
    )


async def test_an_image_that_fails_to_pull_ends_with_the_reason(env: Env) -> None:
    await make_deployment(env)
    await wait_for(env, done(1))

    await env.cluster.set_image(
        NS, "web", image="registry.example.com/web:broken", change_cause="x"
    )
    failed = await wait_for(env, lambda s: s.failed_reason is not None)

    assert failed.complete is False
    assert failed.revision == 2
    assert failed.failed_reason is not None
    assert failed.failed_reason.startswith("progress deadline exceeded: ReplicaSet")
    assert failed.failed_reason.endswith("has timed out progressing.")
    assert failed.ready == 2  # the old pods still serve


async def test_set_image_of_a_named_container(env: Env) -> None:
    await make_deployment(env, images={"app": "web:1", "proxy": "envoy:1"})
    await wait_for(env, done(1))  # (a controller that has not seen revision 1 makes none)

    await env.cluster.set_image(NS, "web", image="envoy:2", change_cause="x", container="proxy")
    status = await wait_for(env, done(2))
    assert status.images == ("web:1", "envoy:2")

    with pytest.raises(AdapterError) as caught:
        await env.cluster.set_image(NS, "web", image="x:1", change_cause="x", container="nope")
    assert caught.value.message == (
        f"deployment {NS}/web has no container nope; it has: app, proxy"
    )


async def test_rollout_status_of_a_missing_deployment_is_404(env: Env) -> None:
    await env.cluster.ensure_namespace(spec())
    with pytest.raises(AdapterError) as caught:
        await env.cluster.rollout_status(NS, "web")
    assert caught.value.status == 404
    assert caught.value.message == (
        f'reading deployment {NS}/web failed: deployments.apps "web" not found'
    )


async def test_a_paused_deployment_is_not_rolled_back(env: Env) -> None:
    await make_deployment(env)
    await wait_for(env, done(1))
    await env.cluster.set_image(NS, "web", image="web:2", change_cause="deploy 2")
    await wait_for(env, done(2))
    await asyncio.to_thread(
        env.setup.patch_namespaced_deployment, "web", NS, {"spec": {"paused": True}}
    )

    with pytest.raises(AdapterError) as caught:
        await env.cluster.rollback(NS, "web", to_revision=1, change_cause="x")

    assert caught.value.message == f"{NS}/web is paused; resume it (kubectl rollout resume) first"
    assert [r.number for r in await env.cluster.revisions(NS, "web")] == [1, 2]


async def test_a_role_binding_is_ensured_changed_and_deleted(env: Env) -> None:
    from kernel.ports.systems import RoleBindingSpec

    await env.cluster.ensure_namespace(spec())
    wanted = RoleBindingSpec(
        name="platform-access-abc",
        namespace=NS,
        cluster_role="view",
        subject_kind="User",
        subject_name="alice@example.com",
        labels={"app.kubernetes.io/managed-by": "platform-bot"},
        annotations={"platform.example.com/expires-at": "2026-12-03T16:00:00Z"},
    )
    assert await env.cluster.ensure_role_binding(wanted) is True
    assert await env.cluster.ensure_role_binding(wanted) is False  # already so
    stored = env.blue.objects.get("rolebindings", NS, "platform-access-abc")
    assert stored is not None
    assert stored["roleRef"]["name"] == "view"
    assert stored["subjects"] == [
        {"kind": "User", "name": "alice@example.com", "apiGroup": "rbac.authorization.k8s.io"}
    ]
    later = RoleBindingSpec(**{**wanted.__dict__, "annotations": {"x": "later"}})
    assert await env.cluster.ensure_role_binding(later) is True
    edit = RoleBindingSpec(**{**wanted.__dict__, "cluster_role": "edit"})
    assert await env.cluster.ensure_role_binding(edit) is True  # roleRef: delete, create
    stored = env.blue.objects.get("rolebindings", NS, "platform-access-abc")
    assert stored is not None and stored["roleRef"]["name"] == "edit"
    assert await env.cluster.delete_role_binding(NS, "platform-access-abc") is True
    assert await env.cluster.delete_role_binding(NS, "platform-access-abc") is False
    with pytest.raises(AdapterError, match="not found"):
        await env.cluster.ensure_role_binding(
            RoleBindingSpec(**{**wanted.__dict__, "namespace": "nowhere"})
        )


async def test_ensure_workload_makes_the_deployment_and_ingress_then_only_sets_the_image(
    env: Env,
) -> None:
    await env.cluster.ensure_namespace(spec())
    workload = WorkloadSpec(
        namespace=NS,
        name="checkout",
        image="registry.example.com/checkout:1",
        labels={"platform.example.com/on-demand": "demo"},
        host="demo.envs.example.com",
        change_cause="env create 1",
    )
    made = await env.cluster.ensure_workload(workload)
    assert made == ["Deployment/checkout", "Ingress/checkout"]
    status = await env.cluster.rollout_status(NS, "checkout")
    assert status.images == ("registry.example.com/checkout:1",)
    [ingress] = env.blue.objects.list("ingresses", NS)
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "demo.envs.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "checkout",
        "port": {"number": 8080},
    }
    # again (a re-run after a crash): nothing; then a new version only sets the image
    assert await env.cluster.ensure_workload(workload) == []
    newer = WorkloadSpec(**{**workload.__dict__, "image": "registry.example.com/checkout:2"})
    assert await env.cluster.ensure_workload(newer) == ["Deployment/checkout"]
    status = await env.cluster.rollout_status(NS, "checkout")
    assert status.images == ("registry.example.com/checkout:2",)
    assert len(env.blue.objects.list("ingresses", NS)) == 1


async def test_ensure_workload_refused_says_the_api_servers_message(env: Env) -> None:
    await env.cluster.ensure_namespace(spec())
    env.blue.fail_next("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", 403)
    with pytest.raises(AdapterError) as caught:
        await env.cluster.ensure_workload(
            WorkloadSpec(namespace=NS, name="checkout", image="registry.example.com/c:1")
        )
    assert caught.value.message.startswith(f"deploying checkout in {NS} failed: ")
    assert caught.value.status == 403
