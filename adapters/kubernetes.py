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

The client's models mark every field optional, even those the API server always sets
(`metadata`, a Deployment's `spec`); this module reads the objects the API returns as
`Any` rather than assert each field, and builds the bodies it sends with the typed models.

References: https://kubernetes.io/docs/concepts/workloads/controllers/deployment/
(rolling back, revision history, deployment status and the progress deadline),
https://kubernetes.io/docs/reference/using-api/api-concepts/ (status codes, patches),
https://kubernetes.io/docs/concepts/services-networking/network-policies/ (default deny),
https://kubernetes.io/docs/concepts/policy/resource-quotas/ and limit-range/.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from adapters.kubernetes_namespaces import NamespaceCalls
from adapters.kubernetes_namespaces import is_status as _is  # noqa: F401 - shared helpers
from adapters.kubernetes_namespaces import status_message as _status_message
from adapters.kubernetes_rbac import RoleBindings
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


def rollout_status(deployment: Any) -> RolloutStatus:
    """A Deployment's rollout (a V1Deployment), judged as `kubectl rollout status` does."""
    meta = deployment.metadata
    spec = deployment.spec
    status = deployment.status or client.V1DeploymentStatus()
    annotations = meta.annotations or {}
    desired = spec.replicas if spec.replicas is not None else 1
    updated = status.updated_replicas or 0
    available = status.available_replicas or 0
    observed = (status.observed_generation or 0) >= (meta.generation or 0)
    failed_reason = None
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            failed_reason = f"progress deadline exceeded: {condition.message or meta.name}"
    complete = (
        observed
        and failed_reason is None
        and updated >= desired
        and (status.replicas or 0) <= updated  # no old pods left to terminate
        and available >= updated
    )
    return RolloutStatus(
        deployment=str(meta.name),
        revision=_revision_number(annotations),
        images=tuple(str(c.image) for c in spec.template.spec.containers),
        desired=desired,
        updated=updated,
        ready=status.ready_replicas or 0,
        available=available,
        complete=complete,
        failed_reason=failed_reason,
    )


def _revision_number(annotations: dict[str, str] | None) -> int:
    try:
        return int((annotations or {}).get(REVISION, "0"))
    except ValueError:
        return 0


class KubernetesCluster(NamespaceCalls, RoleBindings):
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

    def _as_dict(self, model: Any) -> dict[str, Any]:
        """A client model as the JSON the API server takes (camelCase keys)."""
        serialize: Any = self._api.sanitize_for_serialization
        body: dict[str, Any] = serialize(model)
        return body

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

    def _read_deployment(self, namespace: str, name: str) -> Any:
        return self._apps.read_namespaced_deployment(
            name, namespace, _request_timeout=self._timeout
        )

    async def deployments(self, namespace: str, *, selector: str) -> list[RolloutStatus]:
        found = await self._call(
            f"listing deployments in {namespace} ({selector})",
            lambda: self._apps.list_namespaced_deployment(
                namespace, label_selector=selector, _request_timeout=self._timeout
            ),
        )
        return [rollout_status(d) for d in sorted(found.items, key=lambda d: d.metadata.name)]

    async def rollout_status(self, namespace: str, deployment: str) -> RolloutStatus:
        found = await self._call(
            f"reading deployment {namespace}/{deployment}",
            lambda: self._read_deployment(namespace, deployment),
        )
        return rollout_status(found)

    def _replicasets(self, namespace: str, deployment: Any) -> list[Any]:
        """The ReplicaSets this Deployment controls that carry a revision, oldest first."""
        match_labels = deployment.spec.selector.match_labels or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
        found = self._apps.list_namespaced_replica_set(
            namespace, label_selector=selector, _request_timeout=self._timeout
        )
        uid = deployment.metadata.uid
        owned = [
            rs
            for rs in found.items
            if any(ref.controller and ref.uid == uid for ref in rs.metadata.owner_references or [])
            and _revision_number(rs.metadata.annotations) > 0
        ]
        return sorted(owned, key=lambda rs: _revision_number(rs.metadata.annotations))

    def _revisions_sync(self, namespace: str, name: str) -> list[Revision]:
        deployment = self._read_deployment(namespace, name)
        return [
            Revision(
                number=_revision_number(rs.metadata.annotations),
                images=tuple(str(c.image) for c in rs.spec.template.spec.containers),
                created_at=rs.metadata.creation_timestamp,
                change_cause=(rs.metadata.annotations or {}).get(CHANGE_CAUSE),
                replicaset=str(rs.metadata.name),
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
        names = [c.name for c in deployment.spec.template.spec.containers]
        if container is None:
            container = names[0]
        elif container not in names:
            raise AdapterError(
                "Kubernetes",
                f"deployment {namespace}/{name} has no container {container}; "
                f"it has: {', '.join(names)}",
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
        deployment = self._read_deployment(namespace, name)
        if deployment.spec.paused:  # kubectl refuses too: the rollout would not start
            raise AdapterError(
                "Kubernetes",
                f"{namespace}/{name} is paused; resume it (kubectl rollout resume) first",
            )
        replicasets = self._replicasets(namespace, deployment)
        target = next(
            (rs for rs in replicasets if _revision_number(rs.metadata.annotations) == to_revision),
            None,
        )
        if target is None:
            known = ", ".join(str(_revision_number(rs.metadata.annotations)) for rs in replicasets)
            raise AdapterError(
                "Kubernetes",
                f"revision {to_revision} of {namespace}/{name} not found; known: {known or 'none'}",
                status=404,
            )
        template = self._as_dict(target.spec.template)
        labels = template.get("metadata", {}).get("labels") or {}
        labels.pop(POD_TEMPLATE_HASH, None)
        if template == self._as_dict(deployment.spec.template):
            log.info(
                "cluster %s: %s/%s already runs revision %d",
                self.name,
                namespace,
                name,
                to_revision,
            )
            return
        annotations = dict(deployment.metadata.annotations or {})
        annotations[CHANGE_CAUSE] = cause
        # a JSON patch replaces the whole template, as `kubectl rollout undo` does
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
