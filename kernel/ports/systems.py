"""The small Protocols in front of every external system, and the values they return.

Commands, approvals and alerts import this module (never an adapter module, which pulls
in its SDK). Each Protocol has one real implementation in `adapters/<system>.py` and,
for unit tests, a small in-memory fake in `tests/unit/fakes.py`.

Every method is async (SDK calls run in threads inside the adapter), every `ensure_*`
is idempotent (a Run step may run again after a crash), and every `delete_*` tolerates
what is already gone. Failures raise `AdapterError` (or a subclass) whose message says
what failed in words fit for a Slack message: no secrets, no stack traces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, overload

from kernel.errors import NotConfigured
from kernel.ports.backups import BackupSystems
from kernel.ports.clusters import (
    SERVICE_LABEL,
    Cluster,
    Clusters,
    NamespaceSpec,
    NamespaceState,
    Revision,
    RoleBindingSpec,
    RolloutStatus,
    WorkloadSpec,
)
from kernel.ports.code_host import CiVariable, CodeHost, Pipeline, Project, ProjectRemoval
from kernel.ports.databases import (
    DatabaseLogin,
    DatabaseState,
    ServiceDatabase,
    ServiceDatabases,
)
from kernel.ports.gitops import (
    AUTOMATED_FIELDS,
    AutoSyncEnabled,
    GitOps,
    GitOpsApplication,
    GitOpsHistoryEntry,
)
from kernel.ports.observability import (
    AlertSilences,
    DashboardLinks,
    Matcher,
    MetricsQuery,
    Sample,
    Series,
)
from kernel.ports.secrets import SecretKey, SecretStore, ServiceSecrets

# -- the bundle ------------------------------------------------------------------------


@dataclass(frozen=True)
class Adapters:
    """The external systems this bot is configured to talk to (None: not configured)."""

    gitlab: CodeHost | None = None
    kubernetes: Clusters | None = None
    vault: SecretStore | None = None
    argocd: GitOps | None = None
    alertmanager: AlertSilences | None = None
    prometheus: MetricsQuery | None = None
    grafana: DashboardLinks | None = None
    databases: ServiceDatabases | None = None
    velero: BackupSystems | None = None

    @overload
    def require(self, name: Literal["gitlab"]) -> CodeHost: ...
    @overload
    def require(self, name: Literal["kubernetes"]) -> Clusters: ...
    @overload
    def require(self, name: Literal["vault"]) -> SecretStore: ...
    @overload
    def require(self, name: Literal["argocd"]) -> GitOps: ...
    @overload
    def require(self, name: Literal["alertmanager"]) -> AlertSilences: ...
    @overload
    def require(self, name: Literal["prometheus"]) -> MetricsQuery: ...
    @overload
    def require(self, name: Literal["grafana"]) -> DashboardLinks: ...
    @overload
    def require(self, name: Literal["databases"]) -> ServiceDatabases: ...
    @overload
    def require(self, name: Literal["velero"]) -> BackupSystems: ...

    def require(self, name: SystemName) -> object:
        """The adapter called `name`, or NotConfigured saying which settings it needs."""
        value = getattr(self, name)
        if value is None:
            label, variables = SYSTEMS[name]
            raise NotConfigured(label, variables)
        return value


SystemName = Literal[
    "gitlab",
    "kubernetes",
    "vault",
    "argocd",
    "alertmanager",
    "prometheus",
    "grafana",
    "databases",
    "velero",
]

SYSTEMS: dict[str, tuple[str, str]] = {
    "gitlab": ("GitLab", "GITLAB_URL and GITLAB_TOKEN"),
    "kubernetes": ("Kubernetes", "KUBECONFIG or in-cluster credentials"),
    "vault": ("Vault", "VAULT_ADDR and VAULT_TOKEN"),
    "argocd": ("Argo CD", "ARGOCD_URL and ARGOCD_TOKEN"),
    "alertmanager": ("Alertmanager", "ALERTMANAGER_URL"),
    "prometheus": ("Prometheus", "PROMETHEUS_URL"),
    "grafana": ("Grafana", "GRAFANA_URL"),
    "databases": ("Service databases (Vault's database engine)", "VAULT_ADDR and VAULT_TOKEN"),
    "velero": ("Velero", "KUBECONFIG or in-cluster credentials, with Velero in the clusters"),
}
"""Each system's name for people, and the settings that configure it."""


__all__ = [
    "AUTOMATED_FIELDS",
    "SERVICE_LABEL",
    "SYSTEMS",
    "Adapters",
    "AlertSilences",
    "AutoSyncEnabled",
    "CiVariable",
    "Cluster",
    "Clusters",
    "CodeHost",
    "DashboardLinks",
    "DatabaseLogin",
    "DatabaseState",
    "GitOps",
    "GitOpsApplication",
    "GitOpsHistoryEntry",
    "Matcher",
    "MetricsQuery",
    "NamespaceSpec",
    "NamespaceState",
    "Pipeline",
    "Project",
    "ProjectRemoval",
    "Revision",
    "RoleBindingSpec",
    "RolloutStatus",
    "Sample",
    "SecretKey",
    "SecretStore",
    "Series",
    "ServiceDatabase",
    "ServiceDatabases",
    "ServiceSecrets",
    "SystemName",
    "WorkloadSpec",
]
