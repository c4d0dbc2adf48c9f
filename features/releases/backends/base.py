"""What a deploy backend does, whichever system it drives: the `ReleaseBackend` Protocol.

An environment's `backend` in platform.yml picks one (`kubernetes` or `argocd`);
planning, executing, history and status ask it and never branch on its name. A new
backend (Flux, say) is one more module here and one more entry in `BACKENDS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, TypeVar

from features.releases.actions import Deploy, Rollback
from features.releases.targets import Target
from kernel.actions import Step, StepContext
from kernel.errors import AdapterError, StepFailed
from kernel.ports.platform import AuditEntry

T = TypeVar("T")

POLL_SECONDS = 0.5
"""How often a watch reads the rollout."""
WATCH_TIMEOUT_SECONDS = 15 * 60.0
"""A rollout still unfinished after this long fails the Run (the progress deadline of
Kubernetes usually fails it sooner, with its own reason)."""
READ_ATTEMPTS = 3
"""Reads of the live state a watch tries before it gives up on a failing API."""


@dataclass
class Watch:
    """How a watch step polls: every `poll_seconds`, for at most `timeout_seconds`."""

    poll_seconds: float = POLL_SECONDS
    timeout_seconds: float = WATCH_TIMEOUT_SECONDS

    async def patiently(self, read: Callable[[], Awaitable[T]]) -> T:
        """`await read()` inside a watch: the change is made, so a failed read (a blip of
        the API server) is tried again; the third failure in a row fails the step."""
        attempt = 1
        while True:
            try:
                return await read()
            except (AdapterError, StepFailed) as exc:
                if attempt == READ_ATTEMPTS:
                    raise StepFailed(str(exc)) from None
            attempt += 1
            await asyncio.sleep(self.poll_seconds)

    async def until(
        self,
        context: StepContext,
        poll: Callable[[], Awaitable[tuple[dict[str, Any] | None, str]]],
        *,
        what: str,
    ) -> dict[str, Any]:
        """Call `poll()` until it returns a result (not None); report each new progress
        line it returns into the Run's message; fail after `timeout_seconds`."""
        started = time.monotonic()
        shown = ""
        while True:
            result, line = await poll()
            if result is not None:
                return result
            if line != shown:
                await context.report(line)
                shown = line
            if time.monotonic() - started > self.timeout_seconds:
                raise StepFailed(
                    f"{what} did not finish within {self.timeout_seconds:.0f} s (last seen: {line})"
                )
            await asyncio.sleep(self.poll_seconds)


class ReleaseBackend(Protocol):
    """Deploys and rollbacks on one kind of system (Kubernetes, Argo CD).

    Planning methods raise UsageError (said to the person); execution methods raise
    StepFailed (shown on the Run). Every change is checked first, so a step re-run after
    a crash does not change twice.
    """

    name: ClassVar[str]

    async def plan_deploy(self, target: Target, version: str) -> Deploy:
        """The Deploy of `version`, from the live state."""
        ...

    async def plan_rollback(
        self, target: Target, *, to_revision: int | None, disable_auto_sync: bool
    ) -> Rollback:
        """The Rollback to `to_revision` (default: the previous one), from the live state."""
        ...

    def deploy_title(self, action: Deploy) -> str: ...

    async def deploy(self, context: StepContext, action: Deploy) -> dict[str, Any] | None:
        """Make the change (set the image, sync the Application); what it returns joins
        the step's output (Argo CD: the revision the sync resolved to)."""
        ...

    async def watch_deploy(
        self, context: StepContext, action: Deploy, watch: Watch
    ) -> dict[str, Any]: ...

    def rollback_title(self, action: Rollback) -> str: ...

    def steps_before_rollback(self, action: Rollback) -> list[Step]:
        """Steps a rollback needs first on this backend (Argo CD: auto-sync off)."""
        ...

    async def rollback(self, context: StepContext, action: Rollback) -> None: ...

    async def watch_rollback(
        self, context: StepContext, action: Rollback, watch: Watch
    ) -> dict[str, Any]: ...

    async def after_rollback(self, context: StepContext, action: Rollback) -> None:
        """What to say or offer once a rollback is done (Argo CD: auto-sync back on)."""
        ...

    async def stale_reason(self, action: Deploy | Rollback) -> str | None:
        """Why the live state no longer matches what was planned (and approved), in words
        that follow "prod moved since this was asked: " (e.g. "now revision 3 (image …)").
        AdapterError when the live state cannot be read: an approval click then records
        nothing (features.approvals.desk), so nothing is approved unchecked."""
        ...

    async def history(self, target: Target, audit: list[AuditEntry]) -> list[str]:
        """`/platform history`'s lines, newest first."""
        ...

    async def status(self, target: Target) -> str:
        """`/platform status`'s line for this environment (what runs, how it is doing)."""
        ...


def when(at: datetime | None) -> str:
    """A moment in history lines: `2026-11-27 14:02 UTC`."""
    return f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else "time unknown"
