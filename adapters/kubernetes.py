"""Kubernetes: namespaces for new services, and deploy, rollback and rollout status.

`Clusters` and `Cluster` (in kernel.ports.systems) are what commands and executors see;
`KubernetesClusters` holds one `KubernetesCluster` per kubeconfig context, each on its
own ApiClient of the official client, so one bot talks to several clusters. The client
blocks, so every call runs in `asyncio.to_thread`.

Rollback does what `kubectl rollout undo --to-revision=N` does: it finds the ReplicaSet
the Deployment owns whose `deployment.kubernetes.io/revision` is N and puts that pod
template (without its `pod-template-hash` label) back into the Deployment; the
Deployment controller then makes it the newest revision, so the cluster's history stays
meaningful. Rollout status reads the Deployment the way `kubectl rollout status` does.

Failures become `AdapterError("Kubernetes", "<what> failed: <Status message>", status)`;
the Status message is the API server's own (e.g. `namespaces "x" not found`).

Namespaces (made, described with their Terminating phase, deleted) are the methods
`KubernetesCluster` gets from `adapters.kubernetes_namespaces.NamespaceCalls`.

Deployments and ReplicaSets are read as the API's raw JSON (the client's typed models
drop fields they do not know, and a rollback must not lose any); namespaces and the other
objects the bot only creates go through the typed models.

References: https://kubernetes.io/docs/concepts/workloads/controllers/deployment/
(rolling back, revision history, deployment status and the progress deadline),
https://kubernetes.io/docs/reference/using-api/api-concepts/ (status codes, patches),
https://kubernetes.io/docs/concepts/services-networking/network-policies/ (default deny),
https://kubernetes.io/docs/concepts/policy/resource-quotas/ and limit-range/.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from adapters.kubernetes_namespaces import NamespaceCalls
from adapters.kubernetes_namespaces import is_status as _is  # noqa: F401 - shared helpers
from adapters.kubernetes_namespaces import status_message as _status_message
from adapters.kubernetes_rbac import RoleBindings
from adapters.kubernetes_workloads import Workloads
from kernel.errors import AdapterError
from kernel.ports.systems import Cluster, Clusters, Revision, RolloutStatus

__all__ = ["KubernetesCluster", "KubernetesClusters"]

log = logging.getLogger(__name__)

T = TypeVar("T")

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
POD_TEMPLATE_HASH = "pod-template-hash"
IN_CLUSTER = "in-cluster"
"""The context name of the bot's own cluster when it runs in a pod without a kubeconfig."""


def rollout_status(deployment: dict[str, Any]) -> RolloutStatus:
    """A Deployment (its JSON) judged exactly as `kubectl rollout status` does.

    kubectl pkg/polymorphichelpers/rollout_status.go (DeploymentStatusViewer.Status):
    nothing in `status` is read until `metadata.generation <= status.observedGeneration`
    ("Waiting for deployment spec update to be observed..."); the controller lags behind a
    patch, and until it catches up the conditions and counts describe the previous spec (a
    stale `Progressing=False/ProgressDeadlineExceeded` from a failed deploy among them).
    Once observed, in kubectl's order: a Progressing condition with reason
    ProgressDeadlineExceeded fails; fewer updated replicas than `spec.replicas`, more
    replicas than updated ones (old pods pending termination), or fewer available than
    updated are "waiting"; otherwise the rollout is complete.
    """
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    observed = int(meta.get("generation") or 0) <= int(status.get("observedGeneration") or 0)
    failed_reason = None
    complete = False
    if observed:
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "Progressing"
                and condition.get("reason") == "ProgressDeadlineExceeded"
            ):
                message = condition.get("message") or meta.get("name")
                failed_reason = f"progress deadline exceeded: {message}"
        complete = (
            failed_reason is None
            and updated >= desired
            and int(status.get("replicas") or 0) <= updated  # no old pods left to terminate
            and available >= updated
        )
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return RolloutStatus(
        deployment=str(meta.get("name")),
        revision=_revision_number(meta.get("annotations")),
        images=tuple(str(c.get("image")) for c in containers),
        desired=desired,
        updated=updated,
        ready=int(status.get("readyReplicas") or 0),
        available=available,
        complete=complete,
        failed_reason=failed_reason,
        observed=observed,
    )


def _revision_number(annotations: dict[str, str] | None) -> int:
    try:
        return int((annotations or {}).get(REVISION, "0"))
    except ValueError:
        return 0


class KubernetesCluster(NamespaceCalls, RoleBindings, Workloads):
    """`Cluster` on the official client, for one kubeconfig context."""

    def __init__(self, api: client.ApiClient, *, name: str, timeout: float = 10.0) -> None:
        self.name = name
        self._api = api
        self._timeout = timeout
        self._core: Any = client.CoreV1Api(api)
        self._apps: Any = client.AppsV1Api(api)
        self._rbac: Any = client.RbacAuthorizationV1Api(api)
        self._networking: Any = client.NetworkingV1Api(api)

    def __repr__(self) -> str:
        return f"KubernetesCluster(name={self.name!r}, host={self._api.configuration.host!r})"

    def close(self) -> None:
        """Close the client's pooled connections."""
        self._api.close()  # type: ignore[no-untyped-call]

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run blocking client calls in a thread; failures become AdapterError."""
        try:
            return await asyncio.to_thread(fn)
        except AdapterError:
            raise
        except ApiException as exc:
            raise AdapterError(
                "Kubernetes", f"{what} failed: {_status_message(exc)}", status=exc.status
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise AdapterError(
                "Kubernetes",
                f"{what} failed: cannot reach cluster {self.name} ({type(exc).__name__})",
            ) from exc

    # -- deployments ----------------------------------------------------------
    #
    # Deployments and ReplicaSets are read as raw JSON (`_preload_content=False`), never
    # through the client's typed models: those drop every field they do not know (a field
    # newer than the client, an alpha field), and a rollback that copied a template through
    # them would silently remove it from the Deployment.

    def _json(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The API's answer as JSON, not deserialized into the client's models."""
        response = fn(*args, _preload_content=False, _request_timeout=self._timeout, **kwargs)
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    def _read_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._json(self._apps.read_namespaced_deployment, name, namespace)
        return found

    async def deployments(self, namespace: str, *, selector: str) -> list[RolloutStatus]:
        found = await self._call(
            f"listing deployments in {namespace} ({selector})",
            lambda: self._json(
                self._apps.list_namespaced_deployment, namespace, label_selector=selector
            ),
        )
        items = sorted(found.get("items") or [], key=lambda d: str(d["metadata"]["name"]))
        return [rollout_status(d) for d in items]

    async def rollout_status(self, namespace: str, deployment: str) -> RolloutStatus:
        found = await self._call(
            f"reading deployment {namespace}/{deployment}",
            lambda: self._read_deployment(namespace, deployment),
        )
        return rollout_status(found)

    def _replicasets(self, namespace: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        """The ReplicaSets this Deployment controls that carry a revision, oldest first."""
        match_labels = (deployment["spec"].get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
        found = self._json(
            self._apps.list_namespaced_replica_set, namespace, label_selector=selector
        )
        uid = deployment["metadata"].get("uid")
        owned = [
            rs
            for rs in found.get("items") or []
            if any(
                ref.get("controller") and ref.get("uid") == uid
                for ref in rs["metadata"].get("ownerReferences") or []
            )
            and _revision_number(rs["metadata"].get("annotations")) > 0
        ]
        return sorted(owned, key=lambda rs: _revision_number(rs["metadata"].get("annotations")))

    def _revisions_sync(self, namespace: str, name: str) -> list[Revision]:
        deployment = self._read_deployment(namespace, name)
        return [
            Revision(
                number=_revision_number(rs["metadata"].get("annotations")),
                images=tuple(
                    str(c.get("image")) for c in rs["spec"]["template"]["spec"]["containers"]
                ),
                created_at=_timestamp(rs["metadata"].get("creationTimestamp")),
                change_cause=(rs["metadata"].get("annotations") or {}).get(CHANGE_CAUSE),
                replicaset=str(rs["metadata"]["name"]),
            )
            for rs in self._replicasets(namespace, deployment)
        ]

    async def revisions(self, namespace: str, deployment: str) -> list[Revision]:
        return await self._call(
            f"reading the history of {namespace}/{deployment}",
            lambda: self._revisions_sync(namespace, deployment),
        )

    def _set_image_sync(
        self, namespace: str, name: str, image: str, change_cause: str, container: str | None
    ) -> None:
        deployment = self._read_deployment(namespace, name)
        names = [c.get("name") for c in deployment["spec"]["template"]["spec"]["containers"]]
        if container is None:
            container = str(names[0])
        elif container not in names:
            raise AdapterError(
                "Kubernetes",
                f"deployment {namespace}/{name} has no container {container}; "
                f"it has: {', '.join(str(n) for n in names)}",
            )
        # a strategic merge patch: containers merge by name, the others stay as they are
        patch = {
            "metadata": {"annotations": {CHANGE_CAUSE: change_cause}},
            "spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}},
        }
        self._apps.patch_namespaced_deployment(
            name, namespace, patch, _request_timeout=self._timeout
        )
        log.info("cluster %s: %s/%s %s -> %s", self.name, namespace, name, container, image)

    async def set_image(
        self,
        namespace: str,
        deployment: str,
        *,
        image: str,
        change_cause: str,
        container: str | None = None,
    ) -> None:
        await self._call(
            f"setting the image of {namespace}/{deployment}",
            lambda: self._set_image_sync(namespace, deployment, image, change_cause, container),
        )

    def _rollback_sync(self, namespace: str, name: str, to_revision: int, cause: str) -> None:
        """`kubectl rollout undo --to-revision`, step by step as kubectl
        pkg/polymorphichelpers/rollback.go (DeploymentRollbacker.Rollback) does it."""
        deployment = self._read_deployment(namespace, name)
        if deployment["spec"].get("paused"):  # kubectl refuses too: the rollout would not start
            raise AdapterError(
                "Kubernetes",
                f"{namespace}/{name} is paused; resume it (kubectl rollout resume) first",
            )
        replicasets = self._replicasets(namespace, deployment)
        target = next(
            (
                rs
                for rs in replicasets
                if _revision_number(rs["metadata"].get("annotations")) == to_revision
            ),
            None,
        )
        if target is None:
            known = ", ".join(
                str(_revision_number(rs["metadata"].get("annotations"))) for rs in replicasets
            )
            raise AdapterError(
                "Kubernetes",
                f"revision {to_revision} of {namespace}/{name} not found; known: {known or 'none'}",
                status=404,
            )
        # the ReplicaSet's template as the API returned it, every field kept
        template = _without_hash(target["spec"]["template"])
        if template == _without_hash(deployment["spec"]["template"]):  # equalIgnoreHash
            log.info(
                "cluster %s: %s/%s already runs revision %d",
                self.name,
                namespace,
                name,
                to_revision,
            )
            return
        annotations = rollback_annotations(
            deployment["metadata"].get("annotations") or {},
            target["metadata"].get("annotations") or {},
        )
        # kubectl records no cause of its own (`--record` is gone); the bot names the
        # person and the Run, as `set_image` does
        annotations[CHANGE_CAUSE] = cause
        # a JSON patch replacing the whole template and the annotations, as kubectl's
        # getDeploymentPatch; `add` replaces an existing member and also works without one
        patch = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": "/metadata/annotations", "value": annotations},
        ]
        self._apps.patch_namespaced_deployment(
            name, namespace, patch, _request_timeout=self._timeout
        )
        log.info(
            "cluster %s: %s/%s rolled back to revision %d", self.name, namespace, name, to_revision
        )

    async def rollback(
        self, namespace: str, deployment: str, *, to_revision: int, change_cause: str
    ) -> None:
        await self._call(
            f"rolling back {namespace}/{deployment} to revision {to_revision}",
            lambda: self._rollback_sync(namespace, deployment, to_revision, change_cause),
        )


ANNOTATIONS_KEPT = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
"""kubectl rollback.go `annotationsToSkip`: kept from the Deployment, never copied from the
ReplicaSet."""


def rollback_annotations(deployment: dict[str, str], replicaset: dict[str, str]) -> dict[str, str]:
    """The Deployment's annotations after a rollback, as kubectl rollback.go computes them:
    the Deployment's own values of `ANNOTATIONS_KEPT`, then every other annotation of the
    ReplicaSet being restored (so annotations added since that revision go, and that
    revision's come back)."""
    kept = {k: v for k, v in deployment.items() if k in ANNOTATIONS_KEPT}
    restored = {k: v for k, v in replicaset.items() if k not in ANNOTATIONS_KEPT}
    return {**kept, **restored}


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of a pod template without the controller's `pod-template-hash` label."""
    copied: dict[str, Any] = copy.deepcopy(template)
    labels = (copied.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(POD_TEMPLATE_HASH, None)
    return copied


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class KubernetesClusters:
    """Every cluster the bot may touch, by kubeconfig context name."""

    def __init__(self, clusters: dict[str, KubernetesCluster]) -> None:
        self._clusters = dict(clusters)

    @classmethod
    def from_kubeconfig(
        cls, path: str | None, *, contexts: list[str] | None = None
    ) -> KubernetesClusters:
        """One ApiClient per context of the kubeconfig at `path` (all, or those named).

        With no path: inside a pod, the pod's own cluster (its service account), under
        each name in `contexts` (or "in-cluster"); elsewhere, the default kubeconfig
        ($KUBECONFIG, then ~/.kube/config).
        """
        if path is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(contexts=contexts)
        where = path or "the default kubeconfig"
        try:
            listed, _ = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=path
            )
        except (ConfigException, OSError) as exc:
            raise AdapterError("Kubernetes", f"cannot read {where}: {exc}") from exc
        known = [str(c["name"]) for c in listed or []]
        wanted = contexts if contexts is not None else known
        missing = [c for c in wanted if c not in known]
        if missing:
            raise AdapterError(
                "Kubernetes",
                f"context {', '.join(missing)} is not in {where}; "
                f"known: {', '.join(known) or 'none'}",
            )
        clusters: dict[str, KubernetesCluster] = {}
        for name in wanted:
            try:
                api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=path, context=name, persist_config=False
                )
            except (ConfigException, OSError) as exc:
                for loaded in clusters.values():
                    loaded.close()
                raise AdapterError(
                    "Kubernetes", f"cannot load context {name} of {where}: {exc}"
                ) from exc
            clusters[name] = KubernetesCluster(api, name=name)
        return cls(clusters)

    @classmethod
    def in_cluster(cls, *, contexts: list[str] | None = None) -> KubernetesClusters:
        """The cluster this pod runs in, from its service account."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except ConfigException as exc:
            raise AdapterError("Kubernetes", f"cannot use the in-cluster config: {exc}") from exc
        api = client.ApiClient(configuration)
        return cls({name: KubernetesCluster(api, name=name) for name in contexts or [IN_CLUSTER]})

    def cluster(self, context: str) -> Cluster:
        found = self._clusters.get(context)
        if found is None:
            raise AdapterError(
                "Kubernetes",
                f"no cluster context {context!r}; known: {', '.join(self.contexts()) or 'none'}",
            )
        return found

    def contexts(self) -> list[str]:
        return sorted(self._clusters)

    def api_client(self, context: str) -> client.ApiClient:
        """The ApiClient of a context, for the other adapters on the same clusters (Velero)."""
        return self._clusters[context]._api

    def close(self) -> None:
        """Close every cluster's connections."""
        for cluster in self._clusters.values():
            cluster.close()


def _is_clusters(clusters: KubernetesClusters) -> Clusters:
    """Checked by mypy: KubernetesClusters implements the Clusters Protocol."""
    return clusters
