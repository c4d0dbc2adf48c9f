"""Carrying out a release: the executors of Deploy, Rollback and SetAutoSync.

Each is the same three steps on any backend: make the change, watch the rollout
(reporting `3/4 updated, 2 ready, 2 available` into the Run's progress message), then
post a Grafana link over the rollout's time range in the service's channel. The
environment's backend does the backend-specific part of each.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from features.kit.context import Ports
from features.releases.actions import Deploy, Rollback, SetAutoSync
from features.releases.backends import ArgoCDBackend, ReleaseBackend, Watch, backend_for
from features.releases.backends.base import POLL_SECONDS, WATCH_TIMEOUT_SECONDS
from kernel.actions import Action, Executor, Step, StepContext
from kernel.mrkdwn import code, escape
from kernel.ports.verification import FinishedRollout, NoVerification, RolloutVerifier

log = logging.getLogger(__name__)


class ReleaseExecutor:
    """What the release executors share: the backend, the watch settings, and the
    closing Grafana link."""

    def __init__(
        self,
        ports: Ports,
        *,
        poll_seconds: float = POLL_SECONDS,
        timeout_seconds: float = WATCH_TIMEOUT_SECONDS,
        verifier: RolloutVerifier | None = None,
    ) -> None:
        self.ports = ports
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.verifier = verifier or NoVerification()

    @property
    def watch(self) -> Watch:
        return Watch(poll_seconds=self.poll_seconds, timeout_seconds=self.timeout_seconds)

    def backend(self, action: Deploy | Rollback) -> ReleaseBackend:
        return backend_for(self.ports, action.backend)

    async def announce_done(
        self, context: StepContext, *, service: str, env: str, what: str
    ) -> dict[str, Any]:
        """Post `what` and a Grafana link over the rollout's time range in the service's
        channel; the link is left out when Grafana or a dashboard is not configured."""
        started = _started_at(context)
        link = self.grafana_link(service, env, start=started, end=datetime.now(UTC))
        text = f"{what} (Run `{context.run_id}`)."
        if link:
            text += f" <{escape(link)}|Grafana over the rollout>"
        await self.ports.messenger.post(self.ports.catalog.channel_of_service(service), text=text)
        return {"grafana": link}

    async def verify(
        self, context: StepContext, action: Deploy | Rollback, *, version: str
    ) -> dict[str, Any]:
        """Tell the verifier the rollout finished (it schedules the health check). The
        release is done either way: a verification that cannot be scheduled is logged and
        said in the step's output, never a failed deploy."""
        started = _started_at(context) or datetime.now(UTC)
        rollout = FinishedRollout(
            run_id=str(context.run_id),
            kind="deploy" if isinstance(action, Deploy) else "rollback",
            service=action.service,
            env=action.env,
            version=version,
            requested_by=str(context.requested_by),
            started_at=started,
            finished_at=datetime.now(UTC),
        )
        try:
            note = await self.verifier.rollout_finished(rollout)
        except Exception as exc:
            log.exception("verification not scheduled", extra={"run": rollout.run_id})
            note = f"not verified ({type(exc).__name__})"
        return {"verification": note} if note else {}

    def grafana_link(
        self, service: str, env: str, *, start: datetime | None, end: datetime | None
    ) -> str | None:
        grafana = self.ports.adapters.grafana
        entry = self.ports.catalog.service(service)
        uid = entry.grafana_dashboard or self.ports.catalog.model.platform.grafana_default_dashboard
        if grafana is None or uid is None:
            return None
        return grafana.dashboard(
            uid, start=start, end=end, variables={"service": service, "env": env}
        )


class DeployExecutor(ReleaseExecutor):
    """Deploy: set the image (Kubernetes) or sync (Argo CD), watch, link."""

    action_type: ClassVar[type[Action]] = Deploy

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, Deploy)
        backend = self.backend(action)

        async def change(context: StepContext) -> dict[str, Any]:
            started = {"started_at": datetime.now(UTC).isoformat()}
            return {**started, **(await backend.deploy(context, action) or {})}

        async def watch(context: StepContext) -> dict[str, Any]:
            return await backend.watch_deploy(context, action, self.watch)

        async def done(context: StepContext) -> dict[str, Any]:
            output = await self.announce_done(
                context,
                service=action.service,
                env=action.env,
                what=f"Deployed `{escape(action.service)}` {code(action.version)} to "
                f"`{escape(action.env)}`",
            )
            return {**output, **(await self.verify(context, action, version=action.version))}

        return [
            Step("change", backend.deploy_title(action), change),
            Step("watch", "Watch the rollout", watch),
            Step("done", "Grafana link", done),
        ]

    async def stale_reason(self, action: Action) -> str | None:
        assert isinstance(action, Deploy)
        return await self.backend(action).stale_reason(action)


class RollbackExecutor(ReleaseExecutor):
    """Rollback: undo to a revision (Kubernetes) or to a history id (Argo CD, turning
    auto-sync off first when asked), watch, link; and what the backend offers after."""

    action_type: ClassVar[type[Action]] = Rollback

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, Rollback)
        backend = self.backend(action)

        async def change(context: StepContext) -> dict[str, Any]:
            started = {"started_at": datetime.now(UTC).isoformat()}
            await backend.rollback(context, action)
            return started

        async def watch(context: StepContext) -> dict[str, Any]:
            return await backend.watch_rollback(context, action, self.watch)

        async def done(context: StepContext) -> dict[str, Any]:
            output = await self.announce_done(
                context,
                service=action.service,
                env=action.env,
                what=f"Rolled back `{escape(action.service)}` in `{escape(action.env)}` to "
                + action.destination(),
            )
            await backend.after_rollback(context, action)
            verified = await self.verify(context, action, version=action.destination())
            return {**output, **verified}

        return [
            *backend.steps_before_rollback(action),
            Step("change", backend.rollback_title(action), change),
            Step("watch", "Watch the rollout", watch),
            Step("done", "Grafana link", done),
        ]

    async def stale_reason(self, action: Action) -> str | None:
        assert isinstance(action, Rollback)
        return await self.backend(action).stale_reason(action)


class AutoSyncExecutor(ReleaseExecutor):
    """Turn Argo CD's automated sync on (exactly as it was before a rollback) or off,
    checked first, so a re-run is harmless."""

    action_type: ClassVar[type[Action]] = SetAutoSync

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, SetAutoSync)
        argocd = ArgoCDBackend(self.ports)

        async def switch(context: StepContext) -> dict[str, Any]:
            return await argocd.set_auto_sync(context, action)

        state = "on" if action.enabled else "off"
        return [Step("switch", f"Turn Argo CD auto-sync {state}", switch)]

    async def stale_reason(self, action: Action) -> str | None:
        assert isinstance(action, SetAutoSync)
        if not action.enabled:
            return None
        return await ArgoCDBackend(self.ports).auto_sync_stale_reason(action)


def executors(ports: Ports, verifier: RolloutVerifier | None = None) -> list[Executor]:
    """The executors of Deploy, Rollback and SetAutoSync (deploys and rollbacks tell
    `verifier` when their rollout finished)."""
    return [
        DeployExecutor(ports, verifier=verifier),
        RollbackExecutor(ports, verifier=verifier),
        AutoSyncExecutor(ports),
    ]


def _started_at(context: StepContext) -> datetime | None:
    value = context.outputs.get("change", {}).get("started_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else None
