"""The platform model: the shape of `PLATFORM_CONFIG` (platform.yml).

Teams own services; services run in environments; environments say which cluster
and which deploy backend they use and how risky they are. Approval policies say who
must approve what. Every model forbids unknown keys so a typo is reported, not ignored.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$"
"""Team, service and environment names: DNS-1123 labels of at most 40 characters."""

SLACK_USER_PATTERN = r"^([UW][A-Z0-9]{2,20}|[^@\s]+@[^@\s]+\.[^@\s]+)$"
"""A member is a Slack user id (U…/W…) or an e-mail address Slack can look up."""

SLACK_CHANNEL_PATTERN = r"^([CGD][A-Z0-9]{2,20}|#[a-z0-9][a-z0-9._-]{0,79})$"
"""A channel is an id (C…/G…) or `#name` as Slack spells channel names."""

SLACK_USERGROUP_PATTERN = r"^S[A-Z0-9]{2,20}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check(pattern: str, value: str, what: str) -> str:
    if not re.match(pattern, value):
        raise ValueError(f"'{value}' is not {what}")
    return value


def channel(value: str | None) -> str | None:
    """A Slack channel: `#name` or an id like C0123ABC."""
    if value is None:
        return None
    return _check(SLACK_CHANNEL_PATTERN, value, "a channel; write '#name' or a channel id (C…)")


def usergroup(value: str | None) -> str | None:
    """A Slack user group id (S…), as usergroups.list shows it."""
    if value is None:
        return None
    return _check(SLACK_USERGROUP_PATTERN, value, "a Slack user group id; write its id (S…)")


def people(values: tuple[str, ...]) -> tuple[str, ...]:
    """Slack user ids or e-mail addresses."""
    for value in values:
        if not re.match(SLACK_USER_PATTERN, value):
            raise ValueError(
                f"member '{value}' is neither a Slack user id (U…) nor an e-mail address"
            )
    return values


Channel = Annotated[str, AfterValidator(channel)]
UserGroup = Annotated[str, AfterValidator(usergroup)]
People = Annotated[tuple[str, ...], AfterValidator(people)]


class Team(_Strict):
    """A team: where it talks, and who is in it (listed members and/or a Slack user group)."""

    slack_channel: Channel
    slack_usergroup: UserGroup | None = None
    members: People = ()
    description: str = ""
    gitlab_group: str | None = None
    """GitLab group for the team's projects; default: the team's name."""
    kubernetes_group: str | None = None
    """RBAC group (from the cluster's identity provider) bound in the team's namespaces;
    default: the team's name."""


class VerificationPolicy(_Strict):
    """How deploys and rollbacks in an environment are verified (features/verification):
    the health queries are watched for `window_seconds` after the rollout, against the
    same length of time before it."""

    enabled: bool = True
    window_seconds: int = Field(default=600, ge=1, le=6 * 3600)
    auto_rollback: bool = False
    """On a degraded verdict the bot rolls back by itself (audited as its decision)."""


class HealthQuery(_Strict):
    """A PromQL expression watched after every deploy; `{service}`, `{env}` and
    `{namespace}` are replaced (label-escaped). Degraded when the mean after the rollout
    exceeds the mean before by more than `max_increase` (a fraction) AND `min_delta`."""

    name: str = Field(min_length=1, max_length=40)
    expr: str = Field(min_length=1, max_length=2000)
    unit: Literal["ratio", "seconds", "count", ""] = ""
    max_increase: float = Field(default=0.5, ge=0)
    min_delta: float = Field(default=0.0, ge=0)


class Environment(_Strict):
    """Where a service runs: a Kubernetes context, a deploy backend and a risk level."""

    cluster: str = Field(min_length=1, description="kubeconfig context name")
    backend: Literal["kubernetes", "argocd"] = "kubernetes"
    risk: Literal["low", "medium", "high"] = "low"
    description: str = ""
    database_server: str | None = None
    """The PostgreSQL server (a key of `database_servers`) where the golden path's
    `postgres` step creates this environment's databases; None: no databases here."""
    verification: VerificationPolicy = VerificationPolicy()


DATABASE_PREFIX_PATTERN = r"^([a-z][a-z0-9_]{0,15})?$"


class DatabaseServer(_Strict):
    """A PostgreSQL server the golden path creates service databases on.

    Its admin connection is held by Vault/OpenBao, never by the bot: the platform team
    configures the database secrets engine once (`database/config/<name>`, the
    postgresql-database-plugin, a role with CREATEDB and CREATEROLE, docs/templates.md).
    `host` and `port` are where services (and the bot) reach it."""

    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int = Field(default=5432, ge=1, le=65535)
    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    database_prefix: str = Field(default="", pattern=DATABASE_PREFIX_PATTERN)
    """Prepended to every database and role the bot creates here (tests use a unique one)."""


class Removal(_Strict):
    """Set by Clean up on a service made at run time while it is being removed: who asked,
    and what is still there. The service stays in the catalog (so `/platform status`,
    `/platform audit` and the free-name checks find it) until all of it is gone."""

    requested_by: str
    remains: tuple[str, ...] = ()


class Service(_Strict):
    """A service in the catalog: who owns it, where it runs, where to look when it breaks."""

    owner: str
    environments: tuple[str, ...] = Field(min_length=1)
    description: str = ""
    slack_channel: Channel | None = None
    grafana_dashboard: str | None = None
    runbook: str | None = None
    repository: str | None = None
    """GitLab project path (group/name); set by new-service."""
    argocd_application: str | None = None
    """Argo CD Application name pattern; `{env}` is replaced (default `<service>-{env}`)."""
    removal: Removal | None = None
    """Set while Clean up removes the service (by the bot, never in platform.yml)."""
    health_queries: tuple[HealthQuery, ...] = ()
    """Watched after each deploy; empty: the golden path's (error ratio, p99, restarts)."""


class PolicyMatch(_Strict):
    """Which Actions a policy covers; every given field must match."""

    action: str | None = None
    environment: str | None = None
    service: str | None = None
    team: str | None = None


class Approvers(_Strict):
    """Who may approve: members of these Slack user groups and/or catalog teams."""

    usergroups: tuple[UserGroup, ...] = ()
    teams: tuple[str, ...] = ()


class ApprovalPolicy(_Strict):
    """A rule: Actions matching `match` need `approvals` votes from `approvers`."""

    name: str = Field(min_length=1)
    match: PolicyMatch
    approvals: int = Field(default=1, ge=0, le=10)
    approvers: Approvers = Approvers()
    allow_own_team: bool = True
    expires_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60)
    require_reason: bool = False


class PlatformSettings(_Strict):
    """Platform-wide roles and channels."""

    admins: People = ()
    admins_usergroup: UserGroup | None = None
    audit_channel: Channel | None = None
    fallback_channel: Channel | None = None
    grafana_default_dashboard: str | None = None


KUBERNETES_SUBJECT_PATTERN = r"^(?!system:)[^\s\x00-\x1f]{1,253}$"
"""A Kubernetes user or group name from the identity provider: no spaces or control
characters, at most 253; never `system:` (the API server's own users and groups)."""


def kubernetes_subject(value: str) -> str:
    return _check(
        KUBERNETES_SUBJECT_PATTERN,
        value,
        "a Kubernetes user or group name (no spaces, at most 253 characters, not `system:`)",
    )


KubernetesSubject = Annotated[str, AfterValidator(kubernetes_subject)]
SlackPerson = Annotated[str, AfterValidator(lambda v: people((v,))[0])]


class KubernetesIdentity(_Strict):
    """Who someone is to the clusters: an OIDC user, or a group (exactly one)."""

    user: KubernetesSubject | None = None
    group: KubernetesSubject | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> KubernetesIdentity:
        if (self.user is None) == (self.group is None):
            raise ValueError("give exactly one of `user` or `group`")
        return self


AccessRole = Literal["view", "edit", "debug"]
DEFAULT_ACCESS_ROLES: dict[AccessRole, str] = {
    "view": "view",
    "edit": "edit",
    "debug": "platform-debug",
}


class AccessSettings(_Strict):
    """Temporary access (`/platform access`): who is who in the clusters, which
    ClusterRole each role means, how long a grant may last, when to warn."""

    identities: dict[SlackPerson, KubernetesIdentity] = Field(default_factory=dict)
    """Slack user id (U…) or e-mail -> the cluster identity a RoleBinding names."""
    roles: dict[AccessRole, str] = Field(default_factory=lambda: dict(DEFAULT_ACCESS_ROLES))
    """The ClusterRole each role binds (`view` and `edit` are Kubernetes' own)."""
    max_hours: int = Field(default=8, ge=1, le=7 * 24)
    warn_before_minutes: int = Field(default=15, ge=1, le=24 * 60)


DEFAULT_SIZES: dict[str, dict[str, str]] = {
    "small": {
        "requests.cpu": "1",
        "requests.memory": "2Gi",
        "limits.cpu": "2",
        "limits.memory": "4Gi",
        "pods": "10",
    },
    "medium": {
        "requests.cpu": "2",
        "requests.memory": "4Gi",
        "limits.cpu": "4",
        "limits.memory": "8Gi",
        "pods": "20",
    },
    "large": {
        "requests.cpu": "4",
        "requests.memory": "8Gi",
        "limits.cpu": "8",
        "limits.memory": "16Gi",
        "pods": "40",
    },
}


class TeamEnvironmentLimits(_Strict):
    """One team's limits on environments on demand (unset: the platform-wide default)."""

    default_ttl_hours: int | None = Field(default=None, ge=1, le=90 * 24)
    max_ttl_hours: int | None = Field(default=None, ge=1, le=90 * 24)
    max_environments: int | None = Field(default=None, ge=0, le=500)
    cpu_budget: float | None = Field(default=None, ge=0)


class OnDemandSettings(_Strict):
    """Environments on demand (`/platform env`, `/platform namespace`): which configured
    environment they derive from, the quota sizes, TTLs, per-team limits, warnings."""

    template: str = "staging"
    """The configured environment an on-demand one copies (cluster, backend)."""
    sizes: dict[str, dict[str, str]] = Field(default_factory=lambda: dict(DEFAULT_SIZES))
    """ResourceQuota `hard` of each size; its `requests.cpu` is the cost weight."""
    default_size: str = "small"
    approval_above_cpu: float | None = Field(default=None, ge=0)
    """Sizes asking more CPU than this are `env.create-large` Actions, which approval
    policies can match (`match: {action: env.create-large}`)."""
    ingress_domain: str | None = None
    """`<env>.<domain>` is an environment's URL (an Ingress is made); none: no URL."""
    default_ttl_hours: int = Field(default=72, ge=1, le=90 * 24)
    max_ttl_hours: int = Field(default=7 * 24, ge=1, le=90 * 24)
    max_environments: int = Field(default=5, ge=0, le=500)
    cpu_budget: float = Field(default=8, ge=0)
    """The CPU (sum of sizes' `requests.cpu`) a team's live environments may ask for."""
    teams: dict[str, TeamEnvironmentLimits] = Field(default_factory=dict)
    warn_before_hours: tuple[float, ...] = (24, 1)
    preview_label: str = "preview"
    """The GitLab merge request label that makes a preview environment."""
    preview_ttl_hours: int = Field(default=7 * 24, ge=1, le=90 * 24)

    @model_validator(mode="after")
    def _sizes_known(self) -> OnDemandSettings:
        if self.default_size not in self.sizes:
            raise ValueError(f"default_size '{self.default_size}' is not one of `sizes`")
        if self.default_ttl_hours > self.max_ttl_hours:
            raise ValueError("default_ttl_hours is more than max_ttl_hours")
        return self


class BackupSettings(_Strict):
    """Backups with Velero (`/platform backup`, `backups`, `restore`; new-service's Schedule)."""

    schedule: str = "0 3 * * *"
    """Cron of the daily Velero Schedule new-service makes (UTC)."""
    scheduled_environments: tuple[str, ...] = ("prod",)
    """Environments whose namespaces get that Schedule."""
    retention_hours: int = Field(default=720, ge=1, le=24 * 400)
    """How long scheduled backups are kept (the Schedule's `spec.template.ttl`)."""
    default_ttl_hours: int = Field(default=720, ge=1, le=24 * 400)
    """`/platform backup` without `--ttl`."""
    max_ttl_hours: int = Field(default=24 * 90, ge=1, le=24 * 400)
    """The longest `--ttl` anyone may ask for."""


class PlatformModel(_Strict):
    """The whole of platform.yml."""

    platform: PlatformSettings = PlatformSettings()
    teams: dict[str, Team] = Field(default_factory=dict)
    environments: dict[str, Environment] = Field(default_factory=dict)
    database_servers: dict[str, DatabaseServer] = Field(default_factory=dict)
    services: dict[str, Service] = Field(default_factory=dict)
    approval_policies: tuple[ApprovalPolicy, ...] = ()
    templates_dir: str = "templates"
    access: AccessSettings = AccessSettings()
    on_demand: OnDemandSettings = OnDemandSettings()
    backups: BackupSettings = BackupSettings()
