"""Kubernetes: namespaces with their defaults, rollouts, revisions, role bindings
(the `Cluster` and `Clusters` ports).

See kernel.ports.systems for what every port promises (async, idempotent, errors).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol


@dataclass(frozen=True)
class NamespaceSpec:
    """Everything one service gets in one environment's namespace."""

    name: str
    team: str
    service: str
    environment: str
    rbac_group: str
    """The Kubernetes group (from the identity provider) bound to the `edit` role."""
    service_account: str
    quota: dict[str, str] = field(
        default_factory=lambda: {
            "requests.cpu": "2",
            "requests.memory": "4Gi",
            "limits.cpu": "4",
            "limits.memory": "8Gi",
            "pods": "20",
        }
    )
    default_limits: dict[str, str] = field(
        default_factory=lambda: {"cpu": "500m", "memory": "512Mi"}
    )
    default_requests: dict[str, str] = field(
        default_factory=lambda: {"cpu": "100m", "memory": "128Mi"}
    )


SERVICE_LABEL = "platform.example.com/service"
"""The label on every namespace the bot makes, naming its service."""


@dataclass(frozen=True)
class NamespaceState:
    """What exists of a NamespaceSpec (object kind -> name), e.g. {"ResourceQuota": "q"}."""

    name: str
    labels: dict[str, str]
    objects: dict[str, list[str]]
    phase: str = "Active"
    """Active, or Terminating once deleted: it stays until its content is gone and its
    finalizers are done, and nothing new may be created in it meanwhile."""
    deleting_since: datetime | None = None
    waiting_for: str | None = None
    """While Terminating, what Kubernetes says it still waits for (its conditions)."""

    @property
    def terminating(self) -> bool:
        return self.phase == "Terminating"


@dataclass(frozen=True)
class Revision:
    """One entry of a Deployment's history: a ReplicaSet and its revision number."""

    number: int
    images: tuple[str, ...]
    created_at: datetime | None
    change_cause: str | None
    replicaset: str


@dataclass(frozen=True)
class RolloutStatus:
    """A Deployment's rollout as `kubectl rollout status` sees it."""

    deployment: str
    revision: int
    images: tuple[str, ...]
    desired: int
    updated: int
    ready: int
    available: int
    complete: bool
    failed_reason: str | None
    """Set when the rollout will not finish: ProgressDeadlineExceeded's message."""
    observed: bool = True
    """Whether the controller has seen the newest spec (`metadata.generation <=
    status.observedGeneration`); until then the counts and conditions are the old spec's,
    and neither `complete` nor `failed_reason` is set."""


@dataclass(frozen=True)
class RoleBindingSpec:
    """A RoleBinding of one person (a user or group of the cluster's identity provider)
    to a ClusterRole inside one namespace: temporary access (`/platform access`)."""

    name: str
    namespace: str
    cluster_role: str
    subject_kind: Literal["User", "Group"]
    subject_name: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadSpec:
    """One service running in a namespace of its own (an environment on demand): a
    Deployment of `image`, and an Ingress for `host` when there is one."""

    namespace: str
    name: str
    image: str
    labels: dict[str, str] = field(default_factory=dict)
    replicas: int = 1
    port: int = 8080
    host: str | None = None
    change_cause: str = ""


class Cluster(Protocol):
    """One Kubernetes cluster (a kubeconfig context)."""

    async def ensure_workload(self, spec: WorkloadSpec) -> list[str]:
        """Create the Deployment (and the Ingress when `spec.host`), or set its image if it
        exists; `Kind/name` of what was created or changed. AdapterError with the API
        server's message when it refuses (quota, admission)."""
        ...

    async def ensure_role_binding(self, spec: RoleBindingSpec) -> bool:
        """Create the RoleBinding, or make it match `spec` (its roleRef is immutable, so a
        different role means delete and create); True if anything changed."""
        ...

    async def delete_role_binding(self, namespace: str, name: str) -> bool:
        """True if it existed."""
        ...

    async def ensure_namespace(self, spec: NamespaceSpec) -> list[str]:
        """Namespace, ResourceQuota, LimitRange, default-deny NetworkPolicy, RoleBinding,
        ServiceAccount; returns `Kind/name` of what it created (empty when all existed).
        AdapterError saying so when the namespace is still being deleted (Terminating)."""
        ...

    async def describe_namespace(self, name: str) -> NamespaceState | None: ...

    async def delete_namespace(self, name: str) -> bool:
        """True if it existed. As in Kubernetes, it then stays Terminating until what is
        inside is deleted and its finalizers are done; `describe_namespace` tells."""
        ...

    async def deployments(self, namespace: str, *, selector: str) -> list[RolloutStatus]:
        """Deployments matching the label selector, with their rollout status."""
        ...

    async def revisions(self, namespace: str, deployment: str) -> list[Revision]:
        """Oldest first, from the Deployment's ReplicaSets."""
        ...

    async def set_image(
        self,
        namespace: str,
        deployment: str,
        *,
        image: str,
        change_cause: str,
        container: str | None = None,
    ) -> None:
        """Patch the container image (the first container unless named) and record
        `kubernetes.io/change-cause`."""
        ...

    async def rollback(
        self, namespace: str, deployment: str, *, to_revision: int, change_cause: str
    ) -> None:
        """What `kubectl rollout undo --to-revision` does: apply that ReplicaSet's pod
        template; AdapterError if the revision does not exist."""
        ...

    async def rollout_status(self, namespace: str, deployment: str) -> RolloutStatus: ...


class Clusters(Protocol):
    """Every cluster the bot may touch, by kubeconfig context name."""

    def cluster(self, context: str) -> Cluster:
        """AdapterError naming the known contexts if `context` is unknown."""
        ...

    def contexts(self) -> list[str]: ...
