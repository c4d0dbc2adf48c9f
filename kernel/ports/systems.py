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

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, overload

from kernel.errors import AdapterError, NotConfigured

# -- GitLab ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """A GitLab project as the golden path needs it."""

    id: int
    path_with_namespace: str
    web_url: str
    default_branch: str


@dataclass(frozen=True)
class CiVariable:
    """A CI/CD variable; `environment_scope` "*" means every environment."""

    key: str
    value: str
    environment_scope: str = "*"
    masked: bool = False
    protected: bool = False


@dataclass(frozen=True)
class Pipeline:
    id: int
    status: str
    ref: str
    web_url: str


class CodeHost(Protocol):
    """GitLab: projects, commits, CI/CD variables, protected branches, pipelines."""

    async def find_project(self, path_with_namespace: str) -> Project | None: ...

    async def ensure_project(self, *, group: str, name: str, description: str) -> Project:
        """The project `group/name`, created (with its group) if missing."""
        ...

    async def commit_files(
        self, project_id: int, *, branch: str, message: str, files: dict[str, str]
    ) -> str | None:
        """Commit every file in one commit (create or update); None if all were already
        identical, so a re-run after a crash commits nothing twice. Returns the commit id."""
        ...

    async def ensure_variables(self, project_id: int, variables: list[CiVariable]) -> int:
        """Create or update each (key, environment_scope); returns how many changed."""
        ...

    async def protect_branch(self, project_id: int, branch: str) -> bool:
        """Protect `branch` (maintainers push and merge); True if it was not yet."""
        ...

    async def pipelines(self, project_id: int, *, ref: str | None = None) -> list[Pipeline]:
        """Newest first."""
        ...

    async def delete_project(self, path_with_namespace: str) -> bool:
        """True if it existed."""
        ...


# -- Kubernetes --------------------------------------------------------------------------


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


@dataclass(frozen=True)
class NamespaceState:
    """What exists of a NamespaceSpec (object kind -> name), e.g. {"ResourceQuota": "q"}."""

    name: str
    labels: dict[str, str]
    objects: dict[str, list[str]]


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


class Cluster(Protocol):
    """One Kubernetes cluster (a kubeconfig context)."""

    async def ensure_role_binding(self, spec: RoleBindingSpec) -> bool:
        """Create the RoleBinding, or make it match `spec` (its roleRef is immutable, so a
        different role means delete and create); True if anything changed."""
        ...

    async def delete_role_binding(self, namespace: str, name: str) -> bool:
        """True if it existed."""
        ...

    async def ensure_namespace(self, spec: NamespaceSpec) -> list[str]:
        """Namespace, ResourceQuota, LimitRange, default-deny NetworkPolicy, RoleBinding,
        ServiceAccount; returns `Kind/name` of what it created (empty when all existed)."""
        ...

    async def describe_namespace(self, name: str) -> NamespaceState | None: ...

    async def delete_namespace(self, name: str) -> bool:
        """True if it existed (deletion of what is inside follows, as in Kubernetes)."""
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


# -- Vault -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSecrets:
    """What exists in Vault for one service in one environment."""

    path: str
    kv_exists: bool
    policy_exists: bool
    role_exists: bool


@dataclass(frozen=True)
class SecretKey:
    """One key under a service's KV path, as `secret list` shows it: never its value."""

    key: str
    version: int
    """The current version (KV v2 counts from 1)."""
    updated_at: datetime | None
    set_by: str | None
    """Who wrote the current version through the bot (custom_metadata), if it says."""
    deleted: bool
    """The current version is deleted (soft: older versions may still be rolled back to)."""
    versions: tuple[int, ...] = ()
    """Versions that still hold data (neither deleted nor destroyed), oldest first."""


class SecretStore(Protocol):
    """The Vault operations the golden path and the secrets feature need; all idempotent.

    A service's secrets live one key per KV v2 secret, at `<team>/<service>/<env>/<KEY>`
    holding `{KEY: value}`, so each key has its own versions. Keys match
    `^[A-Z_][A-Z0-9_]*$`; anything else is refused before Vault is asked. Values are
    never logged and never appear in an error.
    """

    async def write_value(
        self,
        team: str,
        service: str,
        env: str,
        key: str,
        value: str,
        *,
        cas: int,
        metadata: dict[str, str],
    ) -> int:
        """Write a new version if the current one is `cas` (0: the key must not exist);
        `metadata` becomes the key's custom_metadata (who, which Run). If the current
        version is `cas + 1` and already holds `value` (a re-run after a crash), nothing
        is written. Returns the version now current; AdapterError if the key moved."""
        ...

    async def read_key(self, team: str, service: str, env: str, key: str) -> SecretKey | None:
        """The key's versions and who set it; None if it does not exist."""
        ...

    async def list_keys(self, team: str, service: str, env: str) -> list[SecretKey]:
        """Every key under the service's path, by name."""
        ...

    async def delete_key(self, team: str, service: str, env: str, key: str, *, purge: bool) -> bool:
        """Delete the current version (soft, as `vault kv delete`), or with `purge` the key
        and every version for good (`vault kv metadata delete`). False if nothing was there."""
        ...

    async def rollback_key(
        self,
        team: str,
        service: str,
        env: str,
        key: str,
        *,
        to_version: int,
        cas: int,
        metadata: dict[str, str],
    ) -> int:
        """Write version `to_version`'s data as a new version (as `vault kv rollback`),
        if the current one is `cas`; idempotent like `write_value`. The new version."""
        ...

    async def encrypt(self, plaintext: str) -> str:
        """Encrypt with the bot's transit key (created if missing); Vault's ciphertext."""
        ...

    async def decrypt(self, ciphertext: str) -> str: ...

    async def fingerprint(self, plaintext: str) -> str:
        """A short keyed hash (transit HMAC) to tell two values apart on an approval card,
        which nobody without the bot's transit key can test guesses against."""
        ...

    async def ensure_kv_path(self, team: str, service: str, env: str) -> str:
        """Create `<team>/<service>/<env>` with a placeholder if missing; return the path."""
        ...

    async def ensure_policy(self, name: str, paths: list[str]) -> bool:
        """Make the ACL policy grant exactly `paths`; True if created or changed."""
        ...

    async def ensure_kubernetes_auth(
        self, host: str, *, ca_cert: str | None = None, disable_local_ca_jwt: bool = False
    ) -> bool:
        """Enable and configure Kubernetes auth; True if anything changed."""
        ...

    async def ensure_kubernetes_role(
        self,
        name: str,
        *,
        service_account: str,
        namespace: str,
        policies: list[str],
        ttl: str = "1h",
    ) -> bool:
        """Bind a role to a service account and namespace; True if created or changed."""
        ...

    async def describe(
        self, team: str, service: str, env: str, *, policy: str, role: str
    ) -> ServiceSecrets:
        """What exists for this service and environment."""
        ...

    async def delete_service(
        self, team: str, service: str, env: str, *, policy: str, role: str
    ) -> None:
        """Remove the KV path (all versions), the policy and the role; missing is fine."""
        ...


# -- Argo CD -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GitOpsHistoryEntry:
    id: int
    revision: str
    deployed_at: datetime | None
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class GitOpsApplication:
    """An Argo CD Application: where it is, whether it is healthy, what it ran."""

    name: str
    sync_status: str
    """Synced, OutOfSync or Unknown."""
    health_status: str
    """Healthy, Progressing, Degraded, Suspended, Missing or Unknown."""
    revision: str
    auto_sync: bool
    images: tuple[str, ...]
    history: tuple[GitOpsHistoryEntry, ...]
    operation_phase: str | None = None
    """Running, Succeeded, Failed, Error or Terminating while/after a sync or rollback."""
    operation_message: str | None = None


class AutoSyncEnabled(AdapterError):
    """Argo CD refuses a rollback while automated sync is on."""


class GitOps(Protocol):
    """Argo CD Applications."""

    async def application(self, name: str) -> GitOpsApplication | None: ...

    async def sync(self, name: str, *, revision: str) -> None: ...

    async def rollback(self, name: str, *, history_id: int) -> None:
        """AutoSyncEnabled when automated sync is on (Argo's own refusal)."""
        ...

    async def set_auto_sync(self, name: str, *, enabled: bool) -> None: ...


# -- Alertmanager, Prometheus, Grafana ---------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def filter(self) -> str:
        """As an Alertmanager API filter, e.g. `service="checkout"` (value escaped)."""
        operator = ("=" if self.is_equal else "!") + ("~" if self.is_regex else "")
        if operator == "!":
            operator = "!="
        value = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{operator}"{value}"'


class AlertSilences(Protocol):
    """Alertmanager's v2 API: silences and the alerts it holds."""

    async def create_silence(
        self,
        *,
        matchers: list[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """The new silence's id."""
        ...

    async def expire_silence(self, silence_id: str) -> bool:
        """True if it was active."""
        ...

    async def alerts(self, *, filters: list[str], active: bool = True) -> list[dict[str, Any]]:
        """Alerts matching `filters` (e.g. `service="checkout"`), as the API returns them."""
        ...


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class MetricsQuery(Protocol):
    """Prometheus instant queries."""

    async def query(self, expr: str) -> list[Sample]: ...


class DashboardLinks(Protocol):
    """Grafana URLs: a dashboard, over a time range, with variables."""

    def dashboard(
        self,
        uid: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        variables: dict[str, str] | None = None,
    ) -> str: ...


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

    def require(self, name: SystemName) -> object:
        """The adapter called `name`, or NotConfigured saying which settings it needs."""
        value = getattr(self, name)
        if value is None:
            label, variables = SYSTEMS[name]
            raise NotConfigured(label, variables)
        return value


SystemName = Literal[
    "gitlab", "kubernetes", "vault", "argocd", "alertmanager", "prometheus", "grafana"
]

SYSTEMS: dict[str, tuple[str, str]] = {
    "gitlab": ("GitLab", "GITLAB_URL and GITLAB_TOKEN"),
    "kubernetes": ("Kubernetes", "KUBECONFIG or in-cluster credentials"),
    "vault": ("Vault", "VAULT_ADDR and VAULT_TOKEN"),
    "argocd": ("Argo CD", "ARGOCD_URL and ARGOCD_TOKEN"),
    "alertmanager": ("Alertmanager", "ALERTMANAGER_URL"),
    "prometheus": ("Prometheus", "PROMETHEUS_URL"),
    "grafana": ("Grafana", "GRAFANA_URL"),
}
"""Each system's name for people, and the settings that configure it."""
