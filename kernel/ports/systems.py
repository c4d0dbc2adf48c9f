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
from datetime import date, datetime
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
    marked_for_deletion_on: date | None = None
    """The day GitLab marked it for deletion (delayed deletion), if it did."""


@dataclass(frozen=True)
class ProjectRemoval:
    """What `CodeHost.delete_project` did."""

    outcome: Literal["absent", "removed", "scheduled"]
    """`absent`: nothing (left) to delete; `removed`: gone for good; `scheduled`: GitLab
    keeps it, marked for deletion, until its retention period ends."""
    path: str
    """Where the project is now (a marked project is renamed) or was."""
    marked_on: date | None = None
    name_free: bool = True
    """Whether a new project may take the old path now (GitLab renames what it marks)."""
    reason: str | None = None
    """GitLab's words for why it would not remove the project for good."""


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

    async def find_project(self, path_with_namespace: str) -> Project | None:
        """The project at exactly this path. None also when the path only redirects to a
        project renamed away from it (as GitLab renames one it marks for deletion): a new
        project may take that path."""
        ...

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

    async def delete_project(
        self, path_with_namespace: str, *, project_id: int | None = None
    ) -> ProjectRemoval:
        """Delete the project for good where GitLab allows it: where deletion is delayed (every
        GitLab since 18.0, Premium and GitLab.com before) the first DELETE only marks it, and a
        second one with `permanently_remove` and its (renamed) `full_path` removes it; where
        the instance forbids that (GitLab.com), it stays marked until its retention period
        ends. `project_id`, when known, names the very project (a new one may have taken the
        path since it was marked). Tolerates what is gone or already marked."""
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


class Cluster(Protocol):
    """One Kubernetes cluster (a kubeconfig context)."""

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


# -- Vault -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceSecrets:
    """What exists in Vault for one service in one environment."""

    path: str
    kv_exists: bool
    policy_exists: bool
    role_exists: bool


class SecretStore(Protocol):
    """The Vault operations the golden path needs; all idempotent."""

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


AUTOMATED_FIELDS = ("prune", "selfHeal", "allowEmpty", "enabled")
"""The fields of Argo CD's `spec.syncPolicy.automated` (SyncPolicyAutomated), all booleans;
`enabled` exists since Argo CD 3.1."""


@dataclass(frozen=True)
class GitOpsHistoryEntry:
    """One `status.history` entry: a successful sync, with the full SHA it deployed."""

    id: int
    revision: str
    deployed_at: datetime | None
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class GitOpsApplication:
    """An Argo CD Application: what runs, what git says should run, how it is doing.

    Three revisions, never to be mixed up: `running_revision` is deployed now;
    `sync_revision` is what git's `target_revision` resolves to (Argo compares against
    it, and automated sync would deploy it); `operation_revision` / `result_revision` are
    what the last (or current) operation was asked for and what it synced.
    """

    name: str
    sync_status: str
    """Synced, OutOfSync or Unknown: whether what runs matches `sync_revision`."""
    health_status: str
    """Healthy, Progressing, Degraded, Suspended, Missing or Unknown."""
    running_revision: str
    """The full SHA deployed now: the newest `status.history` entry (else the last
    successful sync's `syncResult.revision`); "" if Argo never synced it."""
    target_revision: str
    """`spec.source.targetRevision` as written (a branch, tag or SHA; "HEAD" if empty)."""
    sync_revision: str
    """`status.sync.revision`: `target_revision` resolved to a full SHA by the last
    comparison; after a rollback it stays at git's HEAD."""
    automated: dict[str, bool] | None
    """`spec.syncPolicy.automated` exactly as Argo has it; None when absent."""
    images: tuple[str, ...]
    history: tuple[GitOpsHistoryEntry, ...]
    owner_application_set: str | None = None
    """The ApplicationSet that generates it (its controller owns the spec), if any."""
    operation_phase: str | None = None
    """Running, Succeeded, Failed, Error or Terminating while/after a sync or rollback;
    Running as soon as one is requested."""
    operation_message: str | None = None
    operation_revision: str | None = None
    """`operation.sync.revision` of the requested, running or last operation: the revision
    it was asked to sync (a full SHA, or an abbreviation as typed)."""
    result_revision: str | None = None
    """`syncResult.revision` of that operation once Argo resolved it: a full SHA."""

    @property
    def auto_sync(self) -> bool:
        """Argo's rule: `automated` present and its `enabled` not false."""
        return self.automated is not None and self.automated.get("enabled") is not False


class AutoSyncEnabled(AdapterError):
    """Argo CD refuses a rollback while automated sync is on."""


class GitOps(Protocol):
    """Argo CD Applications."""

    async def application(self, name: str) -> GitOpsApplication | None: ...

    async def sync(self, name: str, *, revision: str) -> str:
        """Start a sync to `revision` (a SHA, full or abbreviated, a tag or a branch);
        returns the revision Argo resolved it to (`operation.sync.revision`: a full SHA,
        except an abbreviated SHA, which Argo's controller resolves later)."""
        ...

    async def rollback(self, name: str, *, history_id: int) -> None:
        """AutoSyncEnabled when automated sync is on (Argo's own refusal)."""
        ...

    async def disable_auto_sync(self, name: str) -> str:
        """Turn automated sync off, keeping `prune`, `selfHeal` and `allowEmpty`: with
        `automated.enabled: false` where the server keeps that field (Argo CD 3.1+), else
        by removing `automated` (the caller keeps the block to restore it). Returns which
        ("enabled: false" or "removed"); AdapterError if automated sync is still on."""
        ...

    async def set_automated(
        self, name: str, automated: dict[str, bool] | None, *, current: dict[str, bool] | None
    ) -> None:
        """Make `spec.syncPolicy.automated` exactly `automated` (None removes it), given
        the block as it is now; AdapterError if Argo does not keep it exactly."""
        ...


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
