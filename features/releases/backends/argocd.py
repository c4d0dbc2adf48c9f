"""Releases on Argo CD: a deploy syncs the Application to a git revision, a rollback
uses the Application's history.

Argo CD refuses a rollback while automated sync is on (and auto-sync would undo it), so
planning refuses it first (AutoSyncOn) and offers to turn auto-sync off, roll back, and
leave a button to turn it back on.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from features.kit.context import Ports
from features.releases.actions import AUTO_SYNC_BACK_ON, Deploy, Rollback
from features.releases.backends.base import Watch, when
from features.releases.targets import AutoSyncOn, Target
from kernel.actions import Step, StepContext
from kernel.blocks import actions, button, section
from kernel.errors import AdapterError, StepFailed, UsageError, adapter_call
from kernel.mrkdwn import code, escape
from kernel.ports.platform import AuditEntry
from kernel.ports.systems import AutoSyncEnabled, GitOps, GitOpsApplication

log = logging.getLogger(__name__)

SHOWN = 15
"""History entries `/platform history` lists, newest first."""


class ArgoCDBackend:
    """`ReleaseBackend` on Argo CD's REST API (Applications, sync, history rollback)."""

    name: ClassVar[str] = "argocd"

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    # -- where -----------------------------------------------------------------------

    async def _gitops(self) -> GitOps:
        return self.ports.adapters.require("argocd")

    async def live_application(self, target: Target) -> GitOpsApplication:
        """The target's Application, for planning (errors are said to the person)."""
        gitops = await adapter_call(self._gitops(), reading="Argo CD")
        app = await adapter_call(
            gitops.application(target.application),
            reading=f"the Argo CD Application `{escape(target.application)}`",
        )
        if app is None:
            raise UsageError(
                f"Argo CD has no Application `{escape(target.application)}` for {target.where}."
            )
        return app

    async def step_application(self, service: str, env: str) -> tuple[GitOps, GitOpsApplication]:
        """The Argo CD client and the Application, inside a Run step."""
        gitops = await adapter_call(self._gitops())
        name = self.ports.catalog.argocd_application(service, env)
        app = await adapter_call(gitops.application(name))
        if app is None:
            raise StepFailed(f"Argo CD has no Application {name} any more")
        return gitops, app

    # -- planning --------------------------------------------------------------------

    async def plan_deploy(self, target: Target, version: str) -> Deploy:
        app = await self.live_application(target)
        if app.auto_sync:
            raise UsageError(
                f"Automated sync is on for `{escape(app.name)}`: Argo CD deploys what git "
                "says. Merge the change to git instead, or roll back with "
                f"`/platform rollback {escape(target.service)} {escape(target.env)}`."
            )
        if app.revision == version:
            raise UsageError(f"{target.where} already runs git revision {code(version)}.")
        return Deploy(
            service=target.service,
            env=target.env,
            backend="argocd",
            version=version,
            git_revision=version,
            from_image=", ".join(app.images),
            from_revision=max((h.id for h in app.history), default=0),
            from_git_revision=app.revision,
        )

    async def plan_rollback(
        self, target: Target, *, to_revision: int | None, disable_auto_sync: bool
    ) -> Rollback:
        app = await self.live_application(target)
        history = sorted(app.history, key=lambda h: h.id)
        current = next((h for h in reversed(history) if h.revision == app.revision), None)
        current_id = current.id if current is not None else max((h.id for h in history), default=0)
        others = [h for h in history if h.id != current_id and h.revision != app.revision]
        if not others:
            raise UsageError(
                f"Nothing to roll back to: Argo CD's history of `{escape(app.name)}` has no "
                "other revision."
            )
        if to_revision is None:
            wanted = max(others, key=lambda h: h.id)
        else:
            found = next((h for h in others if h.id == to_revision), None)
            if found is None:
                known = ", ".join(
                    f"{h.id} (current)" if h.id == current_id else str(h.id) for h in history
                )
                raise UsageError(
                    f"`{escape(app.name)}` has no other history id {to_revision}; known: {known}."
                )
            wanted = found
        if app.auto_sync and not disable_auto_sync:
            raise AutoSyncOn(target, wanted.id)
        return Rollback(
            service=target.service,
            env=target.env,
            backend="argocd",
            to_revision=wanted.id,
            from_revision=current_id,
            from_image=", ".join(app.images),
            to_image=", ".join(wanted.images),
            from_git_revision=app.revision,
            to_git_revision=wanted.revision,
            disable_auto_sync=disable_auto_sync and app.auto_sync,
        )

    # -- executing -------------------------------------------------------------------

    def deploy_title(self, action: Deploy) -> str:
        return f"Sync Argo CD: {action.service} in {action.env} to {action.version}"

    async def deploy(self, context: StepContext, action: Deploy) -> None:
        gitops, app = await self.step_application(action.service, action.env)
        if app.revision == action.git_revision and app.operation_phase != "Failed":
            return  # a crash after the sync: it is done already
        await adapter_call(gitops.sync(app.name, revision=action.git_revision or ""))

    async def watch_deploy(
        self, context: StepContext, action: Deploy, watch: Watch
    ) -> dict[str, Any]:
        return await self._watch(context, action, watch, git_revision=action.git_revision or "")

    def rollback_title(self, action: Rollback) -> str:
        return f"Argo CD rollback to history id {action.to_revision}"

    def steps_before_rollback(self, action: Rollback) -> list[Step]:
        if not action.disable_auto_sync:
            return []
        return [Step("auto-sync-off", "Turn off Argo CD auto-sync", self._auto_sync_off)]

    async def _auto_sync_off(self, context: StepContext) -> dict[str, Any]:
        action = context.action
        assert isinstance(action, Rollback)
        gitops, app = await self.step_application(action.service, action.env)
        if app.auto_sync:
            await adapter_call(gitops.set_auto_sync(app.name, enabled=False))
        return {"was_on": app.auto_sync}

    async def rollback(self, context: StepContext, action: Rollback) -> None:
        gitops, app = await self.step_application(action.service, action.env)
        if app.revision == action.to_git_revision and app.operation_phase != "Failed":
            return  # rolled back already (a re-run after a crash)
        if app.revision != action.from_git_revision:
            raise StepFailed(
                f"{action.env} moved since this was planned: now git revision {app.revision}"
            )
        try:
            await gitops.rollback(app.name, history_id=action.to_revision)
        except AutoSyncEnabled:
            raise StepFailed(
                "automated sync was turned on since this was planned; nothing was rolled back"
            ) from None
        except AdapterError as exc:
            raise StepFailed(str(exc)) from None

    async def watch_rollback(
        self, context: StepContext, action: Rollback, watch: Watch
    ) -> dict[str, Any]:
        return await self._watch(context, action, watch, git_revision=action.to_git_revision or "")

    async def after_rollback(self, context: StepContext, action: Rollback) -> None:
        if action.disable_auto_sync:
            await self._offer_auto_sync_back(action, context)

    async def _watch(
        self, context: StepContext, action: Deploy | Rollback, watch: Watch, *, git_revision: str
    ) -> dict[str, Any]:
        """Until the Application's operation succeeded at `git_revision` and it is
        Healthy, or the operation failed."""

        async def poll() -> tuple[dict[str, Any] | None, str]:
            _, app = await watch.patiently(
                lambda: self.step_application(action.service, action.env)
            )
            if app.operation_phase in ("Failed", "Error"):
                raise StepFailed(
                    f"Argo CD: {app.operation_phase}: {app.operation_message or 'no message'}"
                )
            if (
                app.operation_phase in (None, "Succeeded")
                and app.revision == git_revision
                and app.health_status == "Healthy"
            ):
                return {"revision": app.revision}, ""
            return None, (
                f"operation {app.operation_phase or 'none'}, sync {app.sync_status}, "
                f"health {app.health_status}"
            )

        return await watch.until(context, poll, what="Argo CD")

    async def _offer_auto_sync_back(self, action: Rollback, context: StepContext) -> None:
        text = (
            f"Automated sync of `{escape(action.service)}` in `{escape(action.env)}` is *off* "
            "since this rollback, so Argo CD will not redeploy git's revision. Turn it back on "
            "once git holds the version you want."
        )
        await self.ports.messenger.post(
            self.ports.catalog.channel_of_service(action.service),
            text=text,
            blocks=[
                section(text),
                actions(
                    button(
                        AUTO_SYNC_BACK_ON,
                        "Turn auto-sync back on",
                        value=f"{action.service} {action.env}",
                    )
                ),
            ],
            key=f"run:{context.run_id}:auto-sync",
        )

    async def set_auto_sync(self, service: str, env: str, *, enabled: bool) -> bool:
        """Turn automated sync on or off (checked first); True if it changed."""
        gitops, app = await self.step_application(service, env)
        if app.auto_sync != enabled:
            await adapter_call(gitops.set_auto_sync(app.name, enabled=enabled))
        return app.auto_sync != enabled

    async def stale_reason(self, action: Deploy | Rollback) -> str | None:
        try:
            _, app = await self.step_application(action.service, action.env)
        except (AdapterError, StepFailed) as exc:
            log.warning("could not check a release for staleness: %s", exc)
            return None
        if app.revision != action.from_git_revision:
            return (
                f"{action.env} moved since this was asked: now git revision "
                f"{app.revision} (images {', '.join(app.images)})"
            )
        return None

    # -- reading ---------------------------------------------------------------------

    async def history(self, target: Target, audit: list[AuditEntry]) -> list[str]:
        app = await self.live_application(target)
        newest = sorted(app.history, key=lambda h: h.id, reverse=True)
        current = next((h.id for h in newest if h.revision == app.revision), None)
        lines = [
            f"*History of {target.where}* (Argo CD `{escape(app.name)}`, newest first; "
            f"auto-sync {'on' if app.auto_sync else 'off'})"
        ]
        for entry in newest[:SHOWN]:
            mark = " :arrow_left: *running*" if entry.id == current else ""
            images = entry.images or (app.images if entry.id == current else ())
            shown = f" {', '.join(code(i) for i in images)}" if images else ""
            lines.append(
                f"*{entry.id}*{mark} git {code(entry.revision)}{shown} · {when(entry.deployed_at)}"
            )
        if not newest:
            lines.append("No history yet.")
        elif not any(entry.images for entry in newest):
            lines.append("_Argo CD keeps git revisions, not images, in its history._")
        return lines

    async def status(self, target: Target) -> str:
        app = await self.live_application(target)
        return (
            f"{', '.join(code(i) for i in app.images) or 'no images'} · "
            f"{escape(app.sync_status)}, {escape(app.health_status)} · git "
            f"{code(app.revision)} · auto-sync {'on' if app.auto_sync else 'off'} (Argo CD)"
        )
