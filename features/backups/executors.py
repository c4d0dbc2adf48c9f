"""Carrying out backups and restores: check Velero's storage location, create the Backup
or Restore (idempotent by name: a step run again after a crash finds the one it made),
then watch its `status.phase` until Velero is done with it, reporting the item counts
into the Run's progress message.

The watch is a step of its own, so a bot that restarts in the middle of a 20-minute
backup resumes the Run at the watch and reports the same Backup to its end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from features.backups.actions import RestoreCopy, RestoreOver, TakeBackup, hours_text
from features.backups.render import backup_outcome, restore_outcome, where_is_storage
from features.kit.context import Ports
from kernel.actions import Action, Executor, Step, StepContext
from kernel.errors import StepFailed, adapter_call
from kernel.mrkdwn import code
from kernel.ports.backups import (
    SCALE_TO_ZERO,
    SCALE_TO_ZERO_RULES,
    BackupInfo,
    ClusterBackups,
    RestoreInfo,
    backup_labels,
)
from kernel.ports.platform import AuditEntry


@dataclass
class Watching:
    """How often to look at a Backup or Restore, and for how long at most."""

    poll_seconds: float = 5.0
    """The longest pause between two looks; the first looks come sooner (0.25 s, then
    doubling), so a short backup is reported at once and a long one polled gently."""
    timeout_seconds: float = 6 * 3600.0


class _BackupsExecutor:
    def __init__(self, ports: Ports, watching: Watching) -> None:
        self.ports, self.watching = ports, watching

    def velero(self, cluster: str) -> ClusterBackups:
        return self.ports.adapters.require("velero").backups(cluster)

    async def check_location(self, velero: ClusterBackups, name: str) -> str:
        location = await adapter_call(velero.location(name))
        if location is None or not location.available:
            raise StepFailed(where_is_storage(name, location))
        return location.phase

    async def watch(
        self,
        context: StepContext,
        read: Callable[[], Awaitable[BackupInfo | RestoreInfo | None]],
        line: Callable[[Any], str],
        what: str,
    ) -> Any:
        """Read until Velero is done with it; report each change of the progress line."""
        deadline = time.monotonic() + self.watching.timeout_seconds
        said, pause = "", 0.25
        while True:
            found = await adapter_call(read())
            if found is None:
                raise StepFailed(f"{what} is gone from the cluster (deleted by someone?)")
            if found.finished:
                return found
            now = line(found)
            if now != said:
                await context.report(now)
                said = now
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"{what} is still {found.phase or 'New'} after "
                    f"{self.watching.timeout_seconds / 3600:g}h; Velero goes on with it, "
                    "and `/platform backups` shows how it ends"
                )
            await asyncio.sleep(min(pause, self.watching.poll_seconds))
            pause *= 2

    async def audit(self, context: StepContext, event: str, detail: dict[str, Any]) -> None:
        await self.ports.audit.record(
            AuditEntry.of(
                context.requested_by,
                event,
                action=context.action,
                run_id=context.run_id,
                detail=detail,
            )
        )


class BackupExecutor(_BackupsExecutor):
    action_type: ClassVar[type[Action]] = TakeBackup

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, TakeBackup)
        velero = self.velero(action.cluster)

        async def location(context: StepContext) -> dict[str, Any]:
            return {"location": await self.check_location(velero, "default")}

        async def create(context: StepContext) -> dict[str, Any]:
            made = await adapter_call(
                velero.create_backup(
                    name=action.backup_name,
                    namespace=action.namespace,
                    ttl=f"{action.ttl_hours}h0m0s",
                    labels=backup_labels(action.service, action.env),
                )
            )
            await self.audit(context, "backup.started", {"backup": made.name})
            return {"backup": made.name}

        async def watch(context: StepContext) -> dict[str, Any]:
            done: BackupInfo = await self.watch(
                context,
                lambda: velero.backup(action.backup_name),
                lambda b: f"{b.phase or 'New'}: {b.items_done}/{b.items_total} items backed up",
                f"Backup {code(action.backup_name)}",
            )
            await self.audit(
                context,
                "backup.finished",
                {"backup": done.name, "phase": done.phase, "errors": done.errors},
            )
            outcome = backup_outcome(done)
            if done.phase in ("Failed", "FailedValidation"):
                raise StepFailed(outcome)
            return {"outcome": outcome, "phase": done.phase}

        return [
            Step("location", "Check Velero's backup storage location", location),
            Step(
                "create",
                f"Create Backup {action.backup_name} of {action.namespace} "
                f"(kept {hours_text(action.ttl_hours)})",
                create,
            ),
            Step("watch", "Back up (Velero)", watch),
        ]


class RestoreExecutor(_BackupsExecutor):
    action_type: ClassVar[type[Action]] = RestoreCopy

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, RestoreCopy)
        velero = self.velero(action.cluster)

        async def check(context: StepContext) -> dict[str, Any]:
            backup = await adapter_call(velero.backup(action.backup_name))
            if backup is None:
                raise StepFailed(f"backup {code(action.backup_name)} is gone (expired?)")
            if not backup.restorable:
                raise StepFailed(
                    f"backup {code(action.backup_name)} is {backup.phase or 'New'}; only a "
                    "Completed or PartiallyFailed backup can be restored"
                )
            location = backup.storage_location or "default"
            return {"location": await self.check_location(velero, location)}

        async def create(context: StepContext) -> dict[str, Any]:
            modifier = None
            if action.scaled_to_zero:
                await adapter_call(
                    velero.ensure_resource_modifier(SCALE_TO_ZERO, SCALE_TO_ZERO_RULES)
                )
                modifier = SCALE_TO_ZERO
            made = await adapter_call(
                velero.create_restore(
                    name=action.restore_name,
                    backup=action.backup_name,
                    namespace_mapping=(
                        {}
                        if action.target_namespace == action.source_namespace
                        else {action.source_namespace: action.target_namespace}
                    ),
                    existing_policy=action.existing_policy,
                    labels=backup_labels(action.service, action.env),
                    resource_modifier=modifier,
                )
            )
            await self.audit(context, "restore.started", {"restore": made.name})
            return {"restore": made.name}

        async def watch(context: StepContext) -> dict[str, Any]:
            done: RestoreInfo = await self.watch(
                context,
                lambda: velero.restore(action.restore_name),
                lambda r: f"{r.phase or 'New'}: {r.items_done}/{r.items_total} items restored",
                f"Restore {code(action.restore_name)}",
            )
            await self.audit(
                context,
                "restore.finished",
                {
                    "restore": done.name,
                    "phase": done.phase,
                    "warnings": done.warnings,
                    "errors": done.errors,
                },
            )
            outcome = restore_outcome(done, target=action.target_namespace)
            if done.phase in ("Failed", "FailedValidation"):
                raise StepFailed(outcome)
            await self.ports.messenger.post(
                self.ports.catalog.channel_of_service(action.service),
                text=f"{outcome} (backup {code(action.backup_name)}, Run `{context.run_id}`)",
                key=f"restore-done:{context.run_id}",
            )
            return {"outcome": outcome, "phase": done.phase}

        return [
            Step("check", f"Check backup {action.backup_name} and its storage", check),
            Step(
                "create",
                f"Create Restore {action.restore_name} into {action.target_namespace}",
                create,
            ),
            Step("watch", "Restore (Velero)", watch),
        ]


class RestoreOverExecutor(RestoreExecutor):
    action_type: ClassVar[type[Action]] = RestoreOver


def executors_for(watching: Watching) -> Callable[[Ports], list[Executor]]:
    def build(ports: Ports) -> list[Executor]:
        return [
            BackupExecutor(ports, watching),
            RestoreExecutor(ports, watching),
            RestoreOverExecutor(ports, watching),
        ]

    return build
