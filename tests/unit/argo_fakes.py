"""`FakeGitOps`: one Argo CD Application that behaves as Argo CD does where the bot cares.

`sync_revision` (git's HEAD) does not follow operations; what runs is the newest history
entry. A requested operation is Running on the next read and done (Succeeded, history
appended, Healthy) on the one after. Tags and abbreviated SHAs resolve to full SHAs;
`automated.enabled: false` keeps the rest of the policy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kernel.errors import AdapterError
from kernel.ports.systems import AutoSyncEnabled, GitOpsApplication, GitOpsHistoryEntry

IMAGE = "registry.example.com/payments/checkout"
OLD = "a1b2c3d" + "4" * 33
"""1.4.1, history id 1, tag v1.4.1."""
HEAD = "e4f5a6b" + "7" * 33
"""1.4.2, history id 2, git's HEAD, tag v1.4.2."""
NEXT = "f00ba12" + "3" * 33
"""1.4.3, not deployed yet, tag v1.4.3."""
COMMITS = {OLD: "1.4.1", HEAD: "1.4.2", NEXT: "1.4.3"}
TAGS = {"v1.4.1": OLD, "v1.4.2": HEAD, "v1.4.3": NEXT}
POLICY = {"prune": True, "selfHeal": True}


def argo_app(
    *, automated: dict[str, bool] | None = None, owner: str | None = None
) -> GitOpsApplication:
    """checkout-prod-eu running HEAD (1.4.2) after OLD (1.4.1), Synced and Healthy."""
    history = (
        GitOpsHistoryEntry(1, OLD, None, (f"{IMAGE}:1.4.1",)),
        GitOpsHistoryEntry(2, HEAD, None, (f"{IMAGE}:1.4.2",)),
    )
    return GitOpsApplication(
        name="checkout-prod-eu",
        sync_status="Synced",
        health_status="Healthy",
        running_revision=HEAD,
        target_revision="HEAD",
        sync_revision=HEAD,
        automated=automated,
        images=(f"{IMAGE}:1.4.2",),
        history=history,
        owner_application_set=owner,
    )


class FakeGitOps:
    """`GitOps` with one Application; records every call that changes something."""

    def __init__(self, app: GitOpsApplication) -> None:
        self.app = app
        self.calls: list[tuple[str, Any]] = []
        self.failing: set[str] = set()
        """Full SHAs whose sync ends Failed."""
        self.down = False
        """Every call fails as if Argo CD were unreachable."""
        self.stale_reads = 0
        """Reads right after a request that still show the Application from before it (the
        API server answers from its informer's cache)."""
        self._before: GitOpsApplication | None = None
        self._pending: str | None = None
        self._stage: str | None = None

    def _check(self) -> None:
        if self.down:
            raise AdapterError("Argo CD", "cannot reach https://argocd.example.com (timed out)")

    async def application(self, name: str) -> GitOpsApplication | None:
        self._check()
        if name != self.app.name:
            return None
        if self.stale_reads and self._before is not None:
            self.stale_reads -= 1
            return self._before
        if self._stage == "running":
            self._finish()
        elif self._stage == "requested":  # the controller picks it up
            self._stage = "running"
            self.app = replace(
                self.app,
                result_revision=self._resolve(self._pending or ""),
                health_status="Progressing",
            )
        return self.app

    async def sync(self, name: str, *, revision: str) -> str:
        self._check()
        self.calls.append(("sync", revision))
        if self.app.auto_sync and revision not in ("", self.app.target_revision):
            raise AutoSyncEnabled("Argo CD", f"Cannot sync to {revision}: auto-sync is on")
        resolved = TAGS.get(revision, revision)
        if self._resolve(resolved) is None:
            raise AdapterError("Argo CD", f"unable to resolve '{revision}' to a commit SHA")
        self._request(resolved)
        return resolved

    async def rollback(self, name: str, *, history_id: int) -> None:
        self._check()
        if self.app.auto_sync:
            raise AutoSyncEnabled(
                "Argo CD", "rollback cannot be initiated when auto-sync is enabled"
            )
        self.calls.append(("rollback", history_id))
        entry = next(h for h in self.app.history if h.id == history_id)
        self._request(entry.revision)

    async def disable_auto_sync(self, name: str) -> str:
        self._check()
        self.calls.append(("disable_auto_sync", None))
        self.app = replace(self.app, automated={**(self.app.automated or {}), "enabled": False})
        return "enabled: false"

    async def set_automated(
        self, name: str, automated: dict[str, bool] | None, *, current: dict[str, bool] | None
    ) -> None:
        self._check()
        self.calls.append(("set_automated", automated))
        self.app = replace(self.app, automated=automated)

    def _resolve(self, revision: str) -> str | None:
        found = [sha for sha in COMMITS if sha.startswith(revision.lower())]
        return found[0] if len(revision) >= 7 and len(found) == 1 else None

    def _request(self, revision: str) -> None:
        """As the adapter reads a requested operation: Running, no result yet."""
        self._pending, self._stage, self._before = revision, "requested", self.app
        self.app = replace(
            self.app,
            operation_phase="Running",
            operation_message=None,
            operation_revision=revision,
            result_revision=None,
        )

    def _finish(self) -> None:
        full = self._resolve(self._pending or "")
        self._pending, self._stage = None, None
        assert full is not None
        images = (f"{IMAGE}:{COMMITS[full]}",)
        if full in self.failing:
            self.app = replace(
                self.app,
                operation_phase="Failed",
                operation_message="one or more synchronization tasks completed unsuccessfully",
                images=images,
                health_status="Degraded",
            )
            return
        entry = GitOpsHistoryEntry(max(h.id for h in self.app.history) + 1, full, None, images)
        self.app = replace(
            self.app,
            operation_phase="Succeeded",
            operation_message="successfully synced (all tasks run)",
            running_revision=full,
            images=images,
            history=(*self.app.history, entry),
            sync_status="Synced" if full == self.app.sync_revision else "OutOfSync",
            health_status="Healthy",
        )
