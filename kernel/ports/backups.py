"""Backups and restores of a namespace (Velero's `velero.io/v1` API), as features see them.

`BackupSystems.backups(context)` is one cluster's Velero; `ClusterBackups` creates and
reads Backups, Restores, Schedules and reads BackupStorageLocations. Every `create_*` is
idempotent (an object of that name already there is returned as it is, so a Run step can
run again after a crash), every `delete_*` tolerates what is already gone, and failures
raise `AdapterError` with the API server's words.

The values carry what Velero's status says (phases of `backup_types.go` and
`restore_types.go`: New, InProgress, Completed, PartiallyFailed, Failed,
FailedValidation). Velero's API does not report a backup's size, so neither do these.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

SERVICE_LABEL = "platform.example.com/service"
ENV_LABEL = "platform.example.com/environment"


def backup_labels(service: str, env: str) -> dict[str, str]:
    """The labels on every Backup, Restore and Schedule the bot makes for a service."""
    return {"app.kubernetes.io/managed-by": "platform-bot", SERVICE_LABEL: service, ENV_LABEL: env}


def backup_selector(service: str, env: str) -> str:
    """A label selector for a service's Backups in an environment (scheduled ones too)."""
    return f"{SERVICE_LABEL}={service},{ENV_LABEL}={env}"


SCALE_TO_ZERO = "platform-bot-scale-to-zero"
"""The resource modifiers a restore copy is made with: its Deployments get 0 replicas."""
SCALE_TO_ZERO_RULES = """\
version: v1
resourceModifierRules:
  - conditions:
      groupResource: deployments.apps
      resourceNameRegex: ".*"
    mergePatches:
      - patchData: '{"spec": {"replicas": 0}}'
"""


def schedule_name(service: str, env: str) -> str:
    """The daily Schedule new-service makes for a service in an environment."""
    return f"{service}-{env}-daily"


FINISHED = frozenset({"Completed", "PartiallyFailed", "Failed", "FailedValidation"})
"""Phases after which Velero does nothing more with a Backup or Restore."""
RESTORABLE = frozenset({"Completed", "PartiallyFailed"})
"""Phases of a Backup whose contents are in object storage."""


@dataclass(frozen=True)
class BackupInfo:
    name: str
    phase: str
    """"" while Velero has not looked at it yet (shown as New)."""
    namespaces: tuple[str, ...]
    storage_location: str
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime | None
    ttl: str
    items_done: int
    items_total: int
    warnings: int
    errors: int
    failure_reason: str
    validation_errors: tuple[str, ...]
    schedule: str | None
    """The Schedule that made it (label velero.io/schedule-name), if any."""
    labels: dict[str, str]

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED

    @property
    def restorable(self) -> bool:
        return self.phase in RESTORABLE


@dataclass(frozen=True)
class RestoreInfo:
    name: str
    backup: str
    phase: str
    namespace_mapping: dict[str, str]
    existing_policy: str
    items_done: int
    items_total: int
    warnings: int
    errors: int
    failure_reason: str
    validation_errors: tuple[str, ...]
    labels: dict[str, str]

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED


@dataclass(frozen=True)
class ScheduleInfo:
    name: str
    cron: str
    ttl: str
    phase: str
    paused: bool
    last_backup: datetime | None
    namespaces: tuple[str, ...]


@dataclass(frozen=True)
class StorageLocation:
    name: str
    phase: str
    """Available or Unavailable (BackupStorageLocationPhase)."""
    message: str
    access_mode: str

    @property
    def available(self) -> bool:
        return self.phase == "Available"


class ClusterBackups(Protocol):
    """One cluster's Velero."""

    async def create_backup(
        self,
        *,
        name: str,
        namespace: str,
        ttl: str,
        labels: dict[str, str],
        storage_location: str | None = None,
        snapshot_volumes: bool = True,
    ) -> BackupInfo: ...

    async def backup(self, name: str) -> BackupInfo | None: ...

    async def backups(self, *, selector: str) -> list[BackupInfo]:
        """Backups whose labels match the selector, newest first."""
        ...

    async def create_restore(
        self,
        *,
        name: str,
        backup: str,
        namespace_mapping: dict[str, str],
        existing_policy: str,
        labels: dict[str, str],
        resource_modifier: str | None = None,
    ) -> RestoreInfo:
        """`resource_modifier`: a ConfigMap in Velero's namespace made by
        `ensure_resource_modifier`, whose rules patch what is restored."""
        ...

    async def ensure_resource_modifier(self, name: str, rules: str) -> bool:
        """The ConfigMap of Velero resource modifier rules (YAML); True when it changed."""
        ...

    async def restore(self, name: str) -> RestoreInfo | None: ...

    async def location(self, name: str) -> StorageLocation | None: ...

    async def ensure_schedule(
        self, *, name: str, namespace: str, cron: str, ttl: str, labels: dict[str, str]
    ) -> bool:
        """Create or update the Schedule; True when something changed."""
        ...

    async def schedule(self, name: str) -> ScheduleInfo | None: ...

    async def delete_schedule(self, name: str) -> bool:
        """False when it was already gone."""
        ...


class BackupSystems(Protocol):
    """Velero in each cluster, by kubeconfig context (as `Clusters`)."""

    def backups(self, context: str) -> ClusterBackups: ...
