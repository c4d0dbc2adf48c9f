"""The Actions of backups: take a Velero Backup of a service's namespace, restore one into
a fresh namespace (to look at it) or over an existing one (to put it back).

A backup and a restore into a fresh namespace change nothing that runs, so they name no
environment to the approval policy (`affected_environment` is None): environment-wide
rules (`match: {environment: prod}`) and `risk: high` do not hold them up; a rule on their
kind (`match: {action: backup.restore-copy}`) still does. A restore over an existing
namespace names its environment: restoring over prod waits for four eyes.
"""

from __future__ import annotations

import re
from typing import ClassVar

from kernel.actions import Action
from kernel.errors import UsageError
from kernel.ids import EnvironmentName
from kernel.mrkdwn import code, escape

TTL = re.compile(r"^(?:(\d{1,4})d)?(?:(\d{1,5})h)?$")


def parse_ttl(text: str, *, max_hours: int) -> int:
    """`720h`, `30d`, `7d12h` -> hours; UsageError outside 1 hour .. max_hours."""
    match = TTL.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise UsageError(f"{code(text[:20])} is not a TTL; write e.g. `720h`, `30d` or `7d12h`.")
    days, hours = (int(g) if g else 0 for g in match.groups())
    total = days * 24 + hours
    if total < 1 or total > max_hours:
        raise UsageError(f"A backup is kept from 1 hour to {max_hours}h; ask for less.")
    return total


def hours_text(hours: int) -> str:
    days, rest = divmod(hours, 24)
    if days and rest:
        return f"{days}d{rest}h"
    return f"{days}d" if days else f"{rest}h"


class BackupChange(Action):
    """What each backup Action names: the service, its environment and cluster."""

    service: str
    env: str
    team: str
    cluster: str
    """The kubeconfig context (Velero runs in each cluster)."""

    @property
    def where(self) -> str:
        return f"`{escape(self.service)}` in `{escape(self.env)}`"


class TakeBackup(BackupChange):
    """A Velero Backup of the service's namespace (with volume snapshots where the storage
    location supports them), kept for `ttl_hours`."""

    kind: ClassVar[str] = "backup.create"

    namespace: str
    backup_name: str
    ttl_hours: int

    def affected_environment(self) -> EnvironmentName | None:
        return None  # it reads the namespace; nothing that runs changes

    def summary(self) -> str:
        return f"back up {self.service} in {self.env} as {self.backup_name}"

    def lock_key(self) -> str:
        return f"backup:{self.cluster}/{self.namespace}"

    def change_lines(self) -> list[str]:
        return [
            f"Velero Backup {code(self.backup_name)} of namespace {code(self.namespace)} "
            f"(cluster {code(self.cluster)}), kept {hours_text(self.ttl_hours)}"
        ]


class RestoreCopy(BackupChange):
    """Restore a backup into a namespace that does not exist yet: nothing is overwritten."""

    kind: ClassVar[str] = "backup.restore-copy"

    backup_name: str
    restore_name: str
    source_namespace: str
    target_namespace: str
    items: int
    """How many items the backup holds (its status.progress.totalItems)."""
    backup_phase: str

    @property
    def existing_policy(self) -> str:
        return "none"

    @property
    def scaled_to_zero(self) -> bool:
        """A copy's Deployments come up with 0 replicas (a Velero resource modifier): it
        holds the service's Secrets, so its pods would talk to the live database."""
        return self.target_namespace != self.source_namespace

    def affected_environment(self) -> EnvironmentName | None:
        return None  # a new namespace: nothing that runs changes

    def summary(self) -> str:
        return (
            f"restore {self.backup_name} of {self.service} in {self.env} "
            f"into {self.target_namespace}"
        )

    def lock_key(self) -> str:
        return f"restore:{self.cluster}/{self.target_namespace}"

    def change_lines(self) -> list[str]:
        return [
            f"Velero Restore {code(self.restore_name)} of backup {code(self.backup_name)} "
            f"({self.backup_phase}, {self.items} items) into the *new* namespace "
            f"{code(self.target_namespace)} (cluster {code(self.cluster)})",
            f"Nothing is overwritten: {code(self.source_namespace)} is left as it is.",
            "Its Deployments come up with 0 replicas, so nothing in the copy serves or talks "
            "to the live database; scale up what you need.",
        ]


class RestoreOver(RestoreCopy):
    """Restore a backup over a namespace that exists: what is in the backup replaces it."""

    kind: ClassVar[str] = "backup.restore"

    @property
    def existing_policy(self) -> str:
        return "update"

    def affected_environment(self) -> EnvironmentName | None:
        # over the service's own namespace: the environment changes; over an earlier
        # restore copy: nothing that runs does
        return EnvironmentName(self.env) if self.target_namespace == self.source_namespace else None

    def change_lines(self) -> list[str]:
        return [
            f"Velero Restore {code(self.restore_name)} of backup {code(self.backup_name)} "
            f"({self.backup_phase}, {self.items} items) *over* the existing namespace "
            f"{code(self.target_namespace)} (cluster {code(self.cluster)})",
            ":warning: *Overwritten*: every object in the backup that exists in "
            f"{code(self.target_namespace)} now (Deployments, ConfigMaps, Secrets, "
            "RoleBindings, ...) goes back to its backed-up version "
            "(Velero `existingResourcePolicy: update`); objects made since the backup stay.",
            "The service's database is not rolled back by this: its dump is restored "
            "separately (docs/backups.md).",
            *(
                ["Its Deployments come up with 0 replicas (a copy); scale up what you need."]
                if self.scaled_to_zero
                else []
            ),
        ]
