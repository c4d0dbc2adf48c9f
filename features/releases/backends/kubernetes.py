"""Releases on Kubernetes, as kubectl does them: a deploy is `kubectl set image` (with a
change-cause naming the person and the Run), a rollback is `kubectl rollout undo
--to-revision`, and a rollout is watched the way `kubectl rollout status` judges it.

A Deployment's history is its ReplicaSets (revision, pod template, change-cause).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

from features.kit.context import Ports
from features.releases.actions import (
    CHANGE_CAUSE_PATTERN,
    Deploy,
    Rollback,
    change_cause,
    rollout_line,
    with_version,
)
from features.releases.backends.base import Watch, when
from features.releases.targets import Target
from kernel.actions import Step, StepContext
from kernel.errors import AdapterError, StepFailed, UsageError, adapter_call
from kernel.mrkdwn import code, escape, truncate
from kernel.ports.platform import AuditEntry
from kernel.ports.systems import Cluster, Revision, RolloutStatus

log = logging.getLogger(__name__)

SHOWN = 15
"""Revisions `/platform history` lists, newest first."""


class KubernetesBackend:
    """`ReleaseBackend` on the Kubernetes API (one cluster per environment)."""

    name: ClassVar[str] = "kubernetes"

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    # -- where -----------------------------------------------------------------------

    async def _cluster(self, env: str) -> Cluster:
        clusters = self.ports.adapters.require("kubernetes")
        return clusters.cluster(self.ports.catalog.environment(env).cluster)

    async def cluster(self, target: Target) -> Cluster:
        """The target's cluster, for planning (errors are said to the person)."""
        try:
            return await self._cluster(target.env)
        except AdapterError as exc:  # not configured, or no such context: say it as is
            raise UsageError(f"{escape(str(exc))}.") from None

    async def step_cluster(self, service: str, env: str) -> tuple[Cluster, str]:
        """The cluster and namespace, inside a Run step (errors fail the step)."""
        cluster = await adapter_call(self._cluster(env))
        return cluster, self.ports.catalog.namespace(service, env)

    async def live_deployments(self, cluster: Cluster, target: Target) -> list[RolloutStatus]:
        statuses = await adapter_call(
            cluster.deployments(target.namespace, selector=target.selector),
            reading=f"the Deployments of {target.where}",
        )
        if not statuses:
            raise UsageError(
                f"No Deployment labelled `{escape(target.selector)}` in namespace "
                f"`{escape(target.namespace)}` (cluster `{escape(target.environment.cluster)}`): "
                f"{target.where} is not deployed yet (its pipeline's deploy job does that)."
            )
        return sorted(statuses, key=lambda s: s.deployment)

    # -- planning --------------------------------------------------------------------

    async def plan_deploy(self, target: Target, version: str) -> Deploy:
        statuses = await self.live_deployments(await self.cluster(target), target)
        first = statuses[0]
        if not first.images:
            raise UsageError(f"The Deployment `{escape(first.deployment)}` has no container image.")
        image = with_version(first.images[0], version)
        if all(s.images[:1] == (image,) for s in statuses):
            raise UsageError(f"{target.where} already runs `{escape(image)}`; nothing to deploy.")
        return Deploy(
            service=target.service,
            env=target.env,
            version=version,
            image=image,
            from_image=first.images[0],
            from_revision=first.revision,
            deployments=tuple(s.deployment for s in statuses),
        )

    async def plan_rollback(
        self, target: Target, *, to_revision: int | None, disable_auto_sync: bool
    ) -> Rollback:
        cluster = await self.cluster(target)
        statuses = await self.live_deployments(cluster, target)
        if len(statuses) > 1:
            names = ", ".join(code(s.deployment) for s in statuses)
            raise UsageError(
                f"{target.where} has {len(statuses)} Deployments ({names}); a rollback takes "
                "one. Deploy the version you want instead."
            )
        live = statuses[0]
        revisions = await adapter_call(
            cluster.revisions(target.namespace, live.deployment),
            reading=f"the revisions of {target.where}",
        )
        wanted = _choose_revision(target, live.revision, revisions, to_revision)
        return Rollback(
            service=target.service,
            env=target.env,
            to_revision=wanted.number,
            from_revision=live.revision,
            from_image=", ".join(live.images),
            to_image=", ".join(wanted.images),
            deployment=live.deployment,
        )

    # -- executing -------------------------------------------------------------------

    def deploy_title(self, action: Deploy) -> str:
        return f"Set the image: {action.service} in {action.env} to {action.version}"

    async def deploy(self, context: StepContext, action: Deploy) -> None:
        cluster, namespace = await self.step_cluster(action.service, action.env)
        cause = change_cause("deploy", action.version, context)
        for deployment in action.deployments:
            status = await adapter_call(cluster.rollout_status(namespace, deployment))
            if status.images[:1] == (action.image,):
                continue  # set already (a re-run after a crash)
            await adapter_call(
                cluster.set_image(
                    namespace, deployment, image=action.image or "", change_cause=cause
                )
            )

    async def watch_deploy(
        self, context: StepContext, action: Deploy, watch: Watch
    ) -> dict[str, Any]:
        return await self._watch(
            context,
            action,
            watch,
            deployments=action.deployments,
            arrived=lambda s: s.images[:1] == (action.image,),
        )

    def rollback_title(self, action: Rollback) -> str:
        return f"Roll back to revision {action.to_revision}"

    def steps_before_rollback(self, action: Rollback) -> list[Step]:
        return []

    async def rollback(self, context: StepContext, action: Rollback) -> None:
        cluster, namespace = await self.step_cluster(action.service, action.env)
        deployment = action.deployment or action.service
        status = await adapter_call(cluster.rollout_status(namespace, deployment))
        if status.revision != action.from_revision:
            if ", ".join(status.images) == action.to_image:
                return  # rolled back already (a re-run after a crash)
            raise StepFailed(
                f"{action.env} moved since this was planned: now revision {status.revision}"
            )
        await adapter_call(
            cluster.rollback(
                namespace,
                deployment,
                to_revision=action.to_revision,
                change_cause=change_cause("rollback", f"to revision {action.to_revision}", context),
            )
        )

    async def watch_rollback(
        self, context: StepContext, action: Rollback, watch: Watch
    ) -> dict[str, Any]:
        return await self._watch(
            context,
            action,
            watch,
            deployments=[action.deployment or action.service],
            arrived=lambda s: (
                s.revision != action.from_revision and ", ".join(s.images) == action.to_image
            ),
        )

    async def after_rollback(self, context: StepContext, action: Rollback) -> None:
        return None

    async def _watch(
        self,
        context: StepContext,
        action: Deploy | Rollback,
        watch: Watch,
        *,
        deployments: Sequence[str],
        arrived: Any,
    ) -> dict[str, Any]:
        """Until every Deployment's rollout is complete (and `arrived`), or fails."""
        cluster, namespace = await self.step_cluster(action.service, action.env)

        async def poll() -> tuple[dict[str, Any] | None, str]:
            statuses = [
                await watch.patiently(partial(cluster.rollout_status, namespace, d))
                for d in deployments
            ]
            for status in statuses:
                if status.failed_reason:
                    raise StepFailed(f"{status.deployment}: {status.failed_reason}")
            if all(s.complete and arrived(s) for s in statuses):
                return {"revisions": {s.deployment: s.revision for s in statuses}}, ""
            line = "; ".join(
                (f"{s.deployment}: " if len(statuses) > 1 else "") + rollout_line(s)
                for s in statuses
            )
            return None, line

        return await watch.until(context, poll, what="the rollout")

    async def stale_reason(self, action: Deploy | Rollback) -> str | None:
        deployment = (
            action.deployment
            if isinstance(action, Rollback)
            else (action.deployments[0] if action.deployments else None)
        )
        # AdapterError (the cluster cannot be read) goes to the caller: an approval is
        # then not recorded (features.approvals.desk); it never approves unchecked.
        cluster = await self._cluster(action.env)
        namespace = self.ports.catalog.namespace(action.service, action.env)
        try:
            status = await cluster.rollout_status(namespace, deployment or action.service)
        except AdapterError as exc:
            if exc.status == 404:
                return f"the Deployment {deployment or action.service} is gone"
            raise
        if status.revision != action.from_revision or action.from_image.split(", ")[0] not in (
            status.images
        ):
            return f"now revision {status.revision} (image {', '.join(status.images)})"
        return None

    # -- reading ---------------------------------------------------------------------

    async def history(self, target: Target, audit: list[AuditEntry]) -> list[str]:
        cluster = await self.cluster(target)
        approvers: dict[str, list[str]] = {}
        for entry in audit:
            if entry.event == "run.approved" and entry.run_id:
                approvers.setdefault(entry.run_id, []).append(entry.actor)
        lines = []
        for live in await self.live_deployments(cluster, target):
            revisions = await adapter_call(
                cluster.revisions(target.namespace, live.deployment),
                reading=f"the revisions of {target.where}",
            )
            newest = sorted(revisions, key=lambda r: r.number, reverse=True)
            lines.append(
                f"*History of {target.where}* (Deployment `{escape(live.deployment)}`, "
                f"newest first; {len(revisions)} revisions)"
            )
            lines += [_revision_line(r, live.revision, approvers) for r in newest[:SHOWN]]
        return lines

    async def status(self, target: Target) -> str:
        statuses = await self.live_deployments(await self.cluster(target), target)
        return "; ".join(
            f"{', '.join(code(i) for i in s.images)} · {s.ready}/{s.desired} ready · "
            f"revision {s.revision}"
            + ("" if s.complete else f" · rolling out ({s.updated}/{s.desired} updated)")
            + (f" · :warning: {escape(s.failed_reason)}" if s.failed_reason else "")
            for s in statuses
        )


def _choose_revision(
    target: Target, current: int, revisions: Sequence[Revision], wanted: int | None
) -> Revision:
    others = [r for r in revisions if r.number != current]
    if not others:
        raise UsageError(
            f"Nothing to roll back to: {target.where} has only revision {current}. "
            "Deploy a version instead."
        )
    if wanted is None:
        return max(others, key=lambda r: r.number)
    if wanted == current:
        raise UsageError(f"Revision {current} is the one {target.where} runs now.")
    for revision in others:
        if revision.number == wanted:
            return revision
    known = ", ".join(
        f"{r.number} (current)" if r.number == current else str(r.number)
        for r in sorted(revisions, key=lambda r: r.number)
    )
    raise UsageError(f"{target.where} has no revision {wanted}; known: {known}.")


def _revision_line(revision: Revision, current: int, approvers: dict[str, list[str]]) -> str:
    mark = " :arrow_left: *running*" if revision.number == current else ""
    line = f"*{revision.number}*{mark} {', '.join(code(i) for i in revision.images)}"
    line += f" · {when(revision.created_at)}"
    cause = revision.change_cause or ""
    ours = CHANGE_CAUSE_PATTERN.match(cause)
    if ours:
        line += f" · {escape(ours['verb'])} {escape(ours['what'])} by <@{ours['user']}>"
        approved = approvers.get(ours["run"])
        if approved:
            line += ", approved by " + ", ".join(f"<@{u}>" for u in approved)
    elif cause:
        line += f" · {escape(truncate(cause, 120))}"
    return line
