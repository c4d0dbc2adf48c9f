"""kubectl, upstream's own client, against the Kubernetes stand-in: it must agree with what
the bot concludes (rollout status) and does (rollback), and it must be able to talk to the
stand-in at all (HTTPS with the kubeconfig's CA, a bearer token, discovery with short
names, watches, SelfSubjectAccessReview, RBAC's 403).

Two identities, as in the sandbox: the platform team's admin token, and the bot's token
(its ServiceAccount) bound to only the shipped ClusterRoles (deploy/rbac). The controller
lags 0.3 s behind each write, as a busy real one may.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.kubernetes import KubernetesCluster, KubernetesClusters
from sandbox.standins.kubernetes import KubernetesStandIn
from sandbox.standins.kubernetes_rbac import ADMIN, BOT, shipped_policy
from tests.standins.kubectl import Kubectl

ADMIN_TOKEN = "oracle-admin-token"
BOT_TOKEN = "oracle-bot-token"
NS = "shop-staging"
BOT_USER = "system:serviceaccount:platform-bot:platform-bot"


@dataclass
class Oracle:
    standin: KubernetesStandIn
    admin: Kubectl
    bot_kubectl: Kubectl
    bot: KubernetesCluster
    """The bot's adapter, from a kubeconfig with the bot's token and the stand-in's CA."""

    async def ok(self, *args: str) -> str:
        code, out, err = await self.admin(*args)
        assert code == 0, f"kubectl {' '.join(args)}: {err}"
        return out

    async def deployment(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            await self.ok("get", "deploy", "web", "-n", NS, "-o", "json")
        )
        return found


def make_standin() -> KubernetesStandIn:
    return KubernetesStandIn(
        users={ADMIN_TOKEN: ADMIN, BOT_TOKEN: BOT},
        policy=shipped_policy(),
        rollout_seconds=0.6,
        observe_seconds=0.3,
        failing_images={"broken"},
        progress_deadline_seconds=1.0,
    )


async def open_oracle(
    tmp_path: Path, standin: KubernetesStandIn
) -> tuple[Oracle, KubernetesClusters]:
    path = tmp_path / "bot-kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": standin.kubeconfig_cluster()}],
                "users": [{"name": "bot", "user": {"token": BOT_TOKEN}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "bot"}}],
                "current-context": "c",
            }
        )
    )
    clusters = KubernetesClusters.from_kubeconfig(str(path))
    cluster = clusters.cluster("c")
    assert isinstance(cluster, KubernetesCluster)
    oracle = Oracle(
        standin,
        Kubectl(standin, ADMIN_TOKEN, tmp_path),
        Kubectl(standin, BOT_TOKEN, tmp_path),
        cluster,
    )
    return oracle, clusters


@pytest.fixture
async def oracle(tmp_path: Path) -> AsyncIterator[Oracle]:
    async with make_standin() as standin:
        found, clusters = await open_oracle(tmp_path, standin)
        try:
            yield found
        finally:
            clusters.close()


async def seed(oracle: Oracle) -> None:
    """Namespace `shop-staging` with Deployment `web` at app:1 (revision 1), as CI/CD does."""
    await oracle.ok("create", "namespace", NS)
    manifest = oracle.admin.kubeconfig.parent / "web.json"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "web",
                    "namespace": NS,
                    "annotations": {"kubernetes.io/change-cause": "first", "team": "shop"},
                },
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                    },
                },
            }
        )
    )
    # the stand-in serves no OpenAPI document, which client-side validation downloads
    await oracle.ok("create", "-f", str(manifest), "--validate=false")
    await oracle.ok("rollout", "status", "deploy/web", "-n", NS, "--timeout=20s")


# --- kubectl can talk to it -------------------------------------------------------------


async def test_discovery_serves_short_names_and_kubectl_gets_by_them(oracle: Oracle) -> None:
    await seed(oracle)

    deployments = await oracle.ok("get", "deploy", "-n", NS, "-o", "name")
    replicasets = await oracle.ok("get", "rs", "-n", NS, "-o", "name")
    namespaces = await oracle.ok("get", "ns", "-o", "name")

    assert deployments.split() == ["deployment.apps/web"]
    assert len(replicasets.split()) == 1 and replicasets.startswith("replicaset.apps/web-")
    assert f"namespace/{NS}" in namespaces.split()


async def test_kubectl_auth_can_i_answers_from_the_shipped_roles(oracle: Oracle) -> None:
    # SelfSubjectAccessReview: yes (exit 0) for what the shipped ClusterRoles grant the bot
    allowed = await oracle.bot_kubectl("auth", "can-i", "patch", "deployments", "-n", NS)
    refused = await oracle.bot_kubectl("auth", "can-i", "delete", "deployments", "-n", NS)
    secrets = await oracle.bot_kubectl("auth", "can-i", "get", "secrets", "-n", NS)
    admin = await oracle.admin("auth", "can-i", "delete", "deployments", "-n", NS)

    assert (allowed[0], allowed[1].strip()) == (0, "yes")
    assert (refused[0], refused[1].strip()) == (1, "no")
    assert (secrets[0], secrets[1].strip()) == (1, "no")
    assert (admin[0], admin[1].strip()) == (0, "yes")


async def test_a_call_outside_the_shipped_roles_is_403_in_the_api_servers_words(
    oracle: Oracle,
) -> None:
    await seed(oracle)

    code, _, said = await oracle.bot_kubectl("delete", "deploy", "web", "-n", NS)

    assert code == 1
    assert said.strip() == (
        f'Error from server (Forbidden): deployments.apps "web" is forbidden: User "{BOT_USER}" '
        f'cannot delete resource "deployments" in API group "apps" in the namespace "{NS}"'
    )
    code, _, said = await oracle.bot_kubectl("get", "secrets", "-A")
    assert code == 1
    assert said.strip() == (
        f'Error from server (Forbidden): secrets is forbidden: User "{BOT_USER}" cannot list '
        'resource "secrets" in API group "" at the cluster scope'
    )


async def test_a_token_over_https_only_and_the_ca_from_the_kubeconfig(
    oracle: Oracle, tmp_path: Path
) -> None:
    assert oracle.standin.url.startswith("https://")
    # a kubeconfig without the CA: kubectl refuses the server's certificate
    kubeconfig = yaml.safe_load(oracle.admin.kubeconfig.read_text())
    del kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
    untrusting = tmp_path / "no-ca"
    untrusting.write_text(yaml.safe_dump(kubeconfig))
    process = await asyncio.create_subprocess_exec(
        str(oracle.admin.binary),
        "get",
        "ns",
        env={**os.environ, "KUBECONFIG": str(untrusting)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 1
    assert "certificate signed by unknown authority" in err.decode()


async def test_kubectl_get_watch_streams_the_changes(oracle: Oracle) -> None:
    await seed(oracle)
    watcher = await asyncio.create_subprocess_exec(
        str(oracle.admin.binary),
        "get",
        "deploy",
        "web",
        "-n",
        NS,
        "-w",
        "--output-watch-events",
        "-o",
        'jsonpath={.type} {.object.metadata.generation}{"\\n"}',
        env={**os.environ, "KUBECONFIG": str(oracle.admin.kubeconfig)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert watcher.stdout is not None
    try:
        async with asyncio.timeout(15):
            assert (await watcher.stdout.readline()).decode().split() == ["ADDED", "1"]
            await oracle.ok("set", "image", "deploy/web", "app=app:2", "-n", NS)
            assert (await watcher.stdout.readline()).decode().split() == ["MODIFIED", "2"]
    finally:
        watcher.terminate()
        await watcher.communicate()


# --- kubectl and the bot agree -------------------------------------------------------------


async def test_rollout_status_agrees_with_kubectl_while_rolling_and_when_done(
    oracle: Oracle,
) -> None:
    await seed(oracle)
    await oracle.ok("set", "image", "deploy/web", "app=app:2", "-n", NS)

    # the controller has not seen generation 2 yet: kubectl waits, the bot too
    seen = await oracle.bot.rollout_status(NS, "web")
    assert (seen.observed, seen.complete, seen.failed_reason) == (False, False, None)
    waited = await oracle.admin("rollout", "status", "deploy/web", "-n", NS, "--timeout=20s")

    # kubectl watched it to the end; the bot's judgement of the same object agrees
    assert waited[0] == 0
    assert waited[1].strip().endswith('deployment "web" successfully rolled out')
    done = await oracle.bot.rollout_status(NS, "web")
    assert (done.complete, done.revision, done.images) == (True, 2, ("app:2",))
    live = await oracle.deployment()
    assert int(live["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) == 2
    assert live["status"]["observedGeneration"] == live["metadata"]["generation"]


async def test_a_passed_deadline_fails_for_kubectl_and_for_the_bot(oracle: Oracle) -> None:
    await seed(oracle)
    await oracle.ok("set", "image", "deploy/web", "app=broken", "-n", NS)

    code, _, said = await oracle.admin("rollout", "status", "deploy/web", "-n", NS, "--timeout=20s")

    assert code == 1
    assert said.strip() == 'error: deployment "web" exceeded its progress deadline'
    failed = await oracle.bot.rollout_status(NS, "web")
    assert failed.complete is False
    assert failed.failed_reason is not None
    assert "timed out progressing" in failed.failed_reason


async def test_the_bots_rollback_does_what_kubectl_rollout_undo_does(tmp_path: Path) -> None:
    """The same history on two clusters; kubectl undoes on one, the bot on the other."""
    results: list[dict[str, Any]] = []
    for undo_by in ("kubectl", "bot"):
        scratch = tmp_path / undo_by
        scratch.mkdir()
        async with make_standin() as standin:
            oracle, clusters = await open_oracle(scratch, standin)
            try:
                await seed(oracle)
                await oracle.ok("annotate", "deploy/web", "-n", NS, "team=shop-v2", "--overwrite")
                await oracle.ok("set", "image", "deploy/web", "app=app:2", "-n", NS)
                await oracle.ok("rollout", "status", "deploy/web", "-n", NS, "--timeout=20s")
                if undo_by == "kubectl":
                    await oracle.ok("rollout", "undo", "deploy/web", "-n", NS, "--to-revision=1")
                else:
                    await oracle.bot.rollback(NS, "web", to_revision=1, change_cause="first")
                await oracle.ok("rollout", "status", "deploy/web", "-n", NS, "--timeout=20s")
                results.append(await oracle.deployment())
                history = await oracle.ok("rollout", "history", "deploy/web", "-n", NS)
                results[-1]["history"] = history.split()
            finally:
                clusters.close()
    by_kubectl, by_bot = results

    # kubectl sends the template through Go structs, which add their zero values (a real
    # API server's decoding adds the same ones to every template; the stand-in does not)
    assert without_go_zero_values(by_bot["spec"]["template"]) == without_go_zero_values(
        by_kubectl["spec"]["template"]
    )
    assert by_bot["metadata"]["annotations"] == by_kubectl["metadata"]["annotations"]
    # revision 1's own annotation came back, over the one set since
    assert by_bot["metadata"]["annotations"]["team"] == "shop"
    assert by_bot["history"] == by_kubectl["history"]
    assert by_bot["spec"]["template"]["spec"]["containers"][0]["image"] == "app:1"


def without_go_zero_values(value: Any) -> Any:
    """`value` without `creationTimestamp: null` and empty objects (`resources: {}`)."""
    if isinstance(value, dict):
        return {
            k: without_go_zero_values(v)
            for k, v in value.items()
            if v != {} and not (k == "creationTimestamp" and v is None)
        }
    if isinstance(value, list):
        return [without_go_zero_values(v) for v in value]
    return value
