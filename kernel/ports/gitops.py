"""Argo CD: Applications, sync, history, automated sync (the `GitOps` port).

See kernel.ports.systems for what every port promises (async, idempotent, errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from kernel.errors import AdapterError

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
