"""Kubernetes namespaces for new services: made with everything a service needs, described
(Terminating included), and deleted; the namespace half of `KubernetesCluster`.

A deleted namespace is not gone: it stays Terminating until the namespace controller has
deleted what is inside and its finalizers are done (kubernetes
`pkg/registry/core/namespace/storage/storage.go`,
`pkg/controller/namespace/deletion/namespaced_resources_deleter.go` and its
`status_condition_utils.go`). Meanwhile the API server refuses to create anything in it
(403 with the cause `NamespaceTerminating`, from
`staging/src/k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle/admission.go`) and to
create it again (409 "object is being deleted", from the generic registry's `store.go`).
`describe_namespace` says Terminating and what it waits for (the True conditions), and
`ensure_namespace` says in words that the namespace is still being deleted.

References: https://kubernetes.io/docs/concepts/services-networking/network-policies/
(default deny), https://kubernetes.io/docs/concepts/policy/resource-quotas/ and
limit-range/, https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kernel.errors import AdapterError
from kernel.ports.systems import SERVICE_LABEL, NamespaceSpec, NamespaceState

log = logging.getLogger(__name__)

T = TypeVar("T")

MANAGED_BY = {"app.kubernetes.io/managed-by": "platform-bot"}
LABEL_PREFIX = "platform.example.com"
QUOTA_NAME = "platform-quota"
LIMITS_NAME = "platform-limits"
DENY_NAME = "default-deny"
EDIT_BINDING_NAME = "team-edit"


def status_message(exc: ApiException) -> str:
    """The `message` of the Status body the API server sent, else its HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or f"HTTP {exc.status}")


def is_status(exc: ApiException, status: int) -> bool:
    return bool(exc.status == status)


WAITING_CONDITIONS = (
    "NamespaceDeletionDiscoveryFailure",
    "NamespaceDeletionGroupVersionParsingFailure",
    "NamespaceDeletionContentFailure",
    "NamespaceContentRemaining",
    "NamespaceFinalizersRemaining",
)
"""The namespace controller's conditions; True ones say what a deletion waits for."""


def waiting_for(namespace: Any) -> str | None:
    """What a Terminating namespace still waits for, in Kubernetes' words."""
    said = [
        str(c.message)
        for c in (namespace.status.conditions or [])
        if c.type in WAITING_CONDITIONS and c.status == "True" and c.message
    ]
    left = [f for f in (namespace.spec.finalizers or []) if f != "kubernetes"]
    if not said and left and "kubernetes" not in (namespace.spec.finalizers or []):
        said.append(f"finalizers {', '.join(left)}")
    return "; ".join(said) or None


class NamespaceTerminating(AdapterError):
    """The namespace is still being deleted: nothing can be made in it, nor can it be made
    again, until Kubernetes has removed it."""

    def __init__(self, name: str, since: datetime | None) -> None:
        when = f" (Terminating since {since:%H:%M} UTC)" if since else " (Terminating)"
        super().__init__(
            "Kubernetes",
            f"namespace {name} is still being deleted{when}; nothing can be created in it, "
            "and it can be made again once Kubernetes has removed it",
            status=409,
        )


def namespace_labels(spec: NamespaceSpec) -> dict[str, str]:
    """The labels every namespace of a service carries (who owns it, what it is for)."""
    return {
        **MANAGED_BY,
        f"{LABEL_PREFIX}/team": spec.team,
        SERVICE_LABEL: spec.service,
        f"{LABEL_PREFIX}/environment": spec.environment,
    }


def namespace_objects(spec: NamespaceSpec) -> list[tuple[str, str, Any]]:
    """(kind, name, body) of what goes inside the namespace, in the order it is created."""
    meta = client.V1ObjectMeta
    labels = dict(MANAGED_BY)
    dns = [client.V1NetworkPolicyPort(protocol=protocol, port=53) for protocol in ("UDP", "TCP")]
    kube_system = client.V1LabelSelector(
        match_labels={"kubernetes.io/metadata.name": "kube-system"}
    )
    return [
        (
            "ResourceQuota",
            QUOTA_NAME,
            client.V1ResourceQuota(
                metadata=meta(name=QUOTA_NAME, labels=labels),
                spec=client.V1ResourceQuotaSpec(hard=dict(spec.quota)),
            ),
        ),
        (
            "LimitRange",
            LIMITS_NAME,
            client.V1LimitRange(
                metadata=meta(name=LIMITS_NAME, labels=labels),
                spec=client.V1LimitRangeSpec(
                    limits=[
                        client.V1LimitRangeItem(
                            type="Container",
                            default=dict(spec.default_limits),
                            default_request=dict(spec.default_requests),
                        )
                    ]
                ),
            ),
        ),
        (
            # nothing in or out, except DNS lookups to kube-system
            "NetworkPolicy",
            DENY_NAME,
            client.V1NetworkPolicy(
                metadata=meta(name=DENY_NAME, labels=labels),
                spec=client.V1NetworkPolicySpec(
                    pod_selector=client.V1LabelSelector(),
                    policy_types=["Ingress", "Egress"],
                    egress=[
                        client.V1NetworkPolicyEgressRule(
                            to=[client.V1NetworkPolicyPeer(namespace_selector=kube_system)],
                            ports=dns,
                        )
                    ],
                ),
            ),
        ),
        (
            "RoleBinding",
            EDIT_BINDING_NAME,
            client.V1RoleBinding(
                metadata=meta(name=EDIT_BINDING_NAME, labels=labels),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="edit"
                ),
                subjects=[
                    client.RbacV1Subject(
                        kind="Group",
                        name=spec.rbac_group,
                        api_group="rbac.authorization.k8s.io",
                    )
                ],
            ),
        ),
        (
            "ServiceAccount",
            spec.service_account,
            client.V1ServiceAccount(metadata=meta(name=spec.service_account, labels=labels)),
        ),
    ]


class NamespaceCalls:
    """The namespace methods of `KubernetesCluster`, which gives the clients and `_call`."""

    name: str
    _core: Any
    _networking: Any
    _rbac: Any
    _timeout: float

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    def _create(self, kind: str, namespace: str, body: Any) -> None:
        """Create one object of a kind that goes inside a namespace."""
        timeout = self._timeout
        if kind == "ResourceQuota":
            self._core.create_namespaced_resource_quota(namespace, body, _request_timeout=timeout)
        elif kind == "LimitRange":
            self._core.create_namespaced_limit_range(namespace, body, _request_timeout=timeout)
        elif kind == "NetworkPolicy":
            self._networking.create_namespaced_network_policy(
                namespace, body, _request_timeout=timeout
            )
        elif kind == "RoleBinding":
            self._rbac.create_namespaced_role_binding(namespace, body, _request_timeout=timeout)
        elif kind == "ServiceAccount":
            self._core.create_namespaced_service_account(namespace, body, _request_timeout=timeout)
        else:
            raise ValueError(f"no create for {kind}")

    def _ensure_namespace_sync(self, spec: NamespaceSpec) -> list[str]:
        created: list[str] = []
        labels = namespace_labels(spec)
        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=spec.name, labels=labels))
        try:
            self._core.create_namespace(body, _request_timeout=self._timeout)
            created.append(f"Namespace/{spec.name}")
        except ApiException as exc:
            if not is_status(exc, 409):
                raise
            current = self._core.read_namespace(spec.name, _request_timeout=self._timeout)
            if current.metadata.deletion_timestamp is not None:
                raise NamespaceTerminating(spec.name, current.metadata.deletion_timestamp) from exc
            have = current.metadata.labels or {}
            if any(have.get(k) != v for k, v in labels.items()):
                patch = {"metadata": {"labels": labels}}
                self._core.patch_namespace(spec.name, patch, _request_timeout=self._timeout)
        for kind, name, obj in namespace_objects(spec):
            try:
                self._create(kind, spec.name, obj)
                created.append(f"{kind}/{name}")
            except ApiException as exc:
                if is_status(exc, 403) and "NamespaceTerminating" in (exc.body or ""):
                    raise NamespaceTerminating(spec.name, None) from exc  # deleted meanwhile
                if not is_status(exc, 409):  # 409 AlreadyExists: left as it is
                    raise
        if created:
            log.info("cluster %s: created %s", self.name, ", ".join(created))
        return created

    async def ensure_namespace(self, spec: NamespaceSpec) -> list[str]:
        return await self._call(
            f"creating namespace {spec.name}", lambda: self._ensure_namespace_sync(spec)
        )

    def _describe_namespace_sync(self, name: str) -> NamespaceState | None:
        timeout = self._timeout
        try:
            namespace = self._core.read_namespace(name, _request_timeout=timeout)
        except ApiException as exc:
            if is_status(exc, 404):
                return None
            raise
        lists = {
            "ResourceQuota": self._core.list_namespaced_resource_quota,
            "LimitRange": self._core.list_namespaced_limit_range,
            "NetworkPolicy": self._networking.list_namespaced_network_policy,
            "RoleBinding": self._rbac.list_namespaced_role_binding,
            "ServiceAccount": self._core.list_namespaced_service_account,
        }
        objects = {
            kind: sorted(
                item.metadata.name for item in list_fn(name, _request_timeout=timeout).items
            )
            for kind, list_fn in lists.items()
        }
        deleting = namespace.metadata.deletion_timestamp
        return NamespaceState(
            name=name,
            labels=dict(namespace.metadata.labels or {}),
            objects=objects,
            phase=str(namespace.status.phase or "Active"),
            deleting_since=deleting,
            waiting_for=waiting_for(namespace) if deleting is not None else None,
        )

    async def describe_namespace(self, name: str) -> NamespaceState | None:
        return await self._call(
            f"reading namespace {name}", lambda: self._describe_namespace_sync(name)
        )

    def _delete_namespace_sync(self, name: str) -> bool:
        try:
            self._core.delete_namespace(name, _request_timeout=self._timeout)
        except ApiException as exc:
            if is_status(exc, 404):
                return False
            raise
        return True

    async def delete_namespace(self, name: str) -> bool:
        return await self._call(
            f"deleting namespace {name}", lambda: self._delete_namespace_sync(name)
        )
