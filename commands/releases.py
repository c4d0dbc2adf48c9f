"""Deploys and rollbacks, on Kubernetes and on Argo CD: Actions, planning and executors.

`/platform deploy`, `/platform rollback`, the alert's Rollback button and the release
buttons all come here, so a deploy or a rollback is planned, proposed and carried out
one way:

1. Plan from the live state (`plan_deploy`, `plan_rollback`): check the service, the
   environment, the person's rights and the version, then read what runs now, so the
   Action holds exactly what will change (image and revision, before and after). Its
   fingerprint binds the approval; if the environment moves before the vote, the
   executor's `stale_reason` refuses the approval.
2. Propose it (`propose_release`): `ctx.changes` decides whether it runs now or waits for
   approval; the lock key `<service>/<env>` keeps two at once from overlapping.
3. Execute it (the executors below): change, then watch the rollout, reporting
   `3/4 updated, 2 ready, 2 available` into the Run's progress message, then post a
   Grafana link over the rollout's time range in the service's channel.

On Kubernetes a deploy sets the image (with a change-cause naming the person and the
Run) and a rollback does what `kubectl rollout undo --to-revision` does. On Argo CD a
deploy syncs the Application to a git revision and a rollback uses its history; Argo
refuses a rollback while automated sync is on, so we refuse it first and offer to turn
auto-sync off, roll back, and leave a button to turn it back on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar

from adapters.protocols import (
    AdapterError,
    AutoSyncEnabled,
    Cluster,
    GitOps,
    GitOpsApplication,
    Revision,
    RolloutStatus,
)
from bot.domain import (
    Action,
    ChangeRefused,
    Reply,
    Step,
    StepContext,
    StepFailed,
    StepFunction,
    UsageError,
)
from bot.mrkdwn import code, escape
from bot.ports import Context, Ports
from catalog import UnknownName, membership_of
from catalog.model import Environment

log = logging.getLogger(__name__)
T = TypeVar("T")

Backend = Literal["kubernetes", "argocd"]

VERSION_PATTERN = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[0-9a-f]{64})$")
"""A version is an image tag (Docker's tag grammar) or an image digest; nothing else."""

POLL_SECONDS = 0.5
"""How often the watch step reads the rollout."""
WATCH_TIMEOUT_SECONDS = 15 * 60.0
"""A rollout still unfinished after this long fails the Run (the progress deadline of
Kubernetes usually fails it sooner, with its own reason)."""

READ_ATTEMPTS = 3
"""Reads of the live state a watch tries before it gives up on a failing API."""

AUTO_SYNC_OFF_AND_ROLL_BACK = "release.rollback_without_auto_sync"
"""Button action id: turn Argo CD's automated sync off, then roll back."""
AUTO_SYNC_BACK_ON = "release.auto_sync_on"
"""Button action id: turn Argo CD's automated sync back on after such a rollback."""


# -- Actions ------------------------------------------------------------------------------


class Deploy(Action):
    """Put one version of a service into one environment."""

    kind: ClassVar[str] = "deploy"

    service: str
    env: str
    backend: Backend = "kubernetes"
    version: str
    """What was typed: an image tag, a digest, or (Argo CD) a git revision."""
    image: str | None = None
    """Kubernetes: the full image reference every Deployment gets."""
    git_revision: str | None = None
    """Argo CD: the git revision the Application is synced to."""
    from_image: str
    """What runs now (Argo CD: the Application's images, comma-separated)."""
    from_revision: int
    """Kubernetes: the first Deployment's revision now; Argo CD: the newest history id."""
    from_git_revision: str | None = None
    deployments: tuple[str, ...] = ()
    """Kubernetes: the Deployments that get the image, by name."""

    def summary(self) -> str:
        return f"deploy {self.service} {self.version} to {self.env}"

    def lock_key(self) -> str:
        return f"{self.service}/{self.env}"

    def change_lines(self) -> list[str]:
        where = f"`{escape(self.service)}` in `{escape(self.env)}`"
        if self.backend == "argocd":
            return [
                f"{where}: git revision {code(self.from_git_revision or '?')} -> "
                f"{code(self.git_revision or '?')} (Argo CD)"
            ]
        lines = [
            f"{where}: {image_change(self.from_image, self.image or '')} "
            f"(revision {self.from_revision} -> {self.from_revision + 1})"
        ]
        if len(self.deployments) > 1:
            lines.append("Deployments: " + ", ".join(code(d) for d in self.deployments))
        return lines


class Rollback(Action):
    """Put an earlier revision of a service back in one environment."""

    kind: ClassVar[str] = "rollback"

    service: str
    env: str
    backend: Backend = "kubernetes"
    to_revision: int
    """Kubernetes: the Deployment revision to go back to; Argo CD: the history id."""
    from_revision: int
    """Kubernetes: the revision running now; Argo CD: the current history id."""
    from_image: str
    to_image: str
    deployment: str | None = None
    """Kubernetes: the Deployment rolled back."""
    from_git_revision: str | None = None
    to_git_revision: str | None = None
    disable_auto_sync: bool = False
    """Argo CD: turn automated sync off first (it would undo the rollback)."""

    def summary(self) -> str:
        if self.backend == "argocd":
            return (
                f"roll back {self.service} in {self.env} to history id {self.to_revision} "
                f"(git {self.to_git_revision})"
            )
        return f"roll back {self.service} in {self.env} to revision {self.to_revision}"

    def lock_key(self) -> str:
        return f"{self.service}/{self.env}"

    def change_lines(self) -> list[str]:
        where = f"`{escape(self.service)}` in `{escape(self.env)}`"
        if self.backend == "argocd":
            lines = [
                f"{where}: git {code(self.from_git_revision or '?')} -> "
                f"{code(self.to_git_revision or '?')} (Argo CD history {self.from_revision} -> "
                f"{self.to_revision}); running now: {escape(self.from_image or 'unknown')}"
            ]
            if self.disable_auto_sync:
                lines.append("Automated sync is turned *off* first (a button turns it back on).")
            return lines
        return [
            f"{where}: {image_change(self.from_image, self.to_image)} "
            f"(revision {self.from_revision} -> {self.to_revision}, which becomes revision "
            f"{self.from_revision + 1})"
        ]


class SetAutoSync(Action):
    """Turn Argo CD's automated sync on or off for a service's Application."""

    kind: ClassVar[str] = "auto-sync"

    service: str
    env: str
    enabled: bool

    def summary(self) -> str:
        state = "on" if self.enabled else "off"
        return f"turn auto-sync {state} for {self.service} in {self.env}"

    def change_lines(self) -> list[str]:
        state = "on" if self.enabled else "off"
        return [f"`{escape(self.service)}` in `{escape(self.env)}`: Argo CD auto-sync {state}"]


def image_change(before: str, after: str) -> str:
    """`repo:1.4.2 -> :1.4.1` when only the tag changes, else both images whole."""
    repository, _ = split_image(before)
    if after.startswith(repository) and repository:
        return f"{escape(before)} -> {escape(after[len(repository) :])}"
    return f"{escape(before)} -> {escape(after)}"


def split_image(image: str) -> tuple[str, str]:
    """(`registry:5000/team/app`, `:1.4.2` or `@sha256:…`): a port is not a tag."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def with_version(image: str, version: str) -> str:
    """The same repository at another tag or digest."""
    repository, _ = split_image(image)
    separator = "@" if version.startswith("sha256:") else ":"
    return f"{repository}{separator}{version}"


# -- planning -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a service runs in one environment, as the catalog says."""

    service: str
    env: str
    environment: Environment
    namespace: str
    selector: str
    application: str

    @property
    def backend(self) -> Backend:
        return self.environment.backend

    @property
    def where(self) -> str:
        return f"`{escape(self.service)}` in `{escape(self.env)}`"


class AutoSyncOn(Exception):
    """Argo CD would refuse this rollback: automated sync is on. Offer to turn it off."""

    def __init__(self, target: Target, to_revision: int) -> None:
        super().__init__(f"auto-sync is on for {target.application}")
        self.target = target
        self.to_revision = to_revision


def lookup_target(ctx: Context, service: str, env: str) -> Target:
    """Where `service` runs in `env`; UsageError (with did-you-mean) if it does not."""
    try:
        entry = ctx.catalog.service(service)
        environment = ctx.catalog.environment(env)
    except UnknownName as exc:
        raise UsageError(escape(str(exc))) from None
    if env not in entry.environments:
        runs_in = ", ".join(code(e) for e in entry.environments)
        raise UsageError(
            f"`{escape(service)}` does not run in `{escape(env)}`; it runs in {runs_in}."
        )
    return Target(
        service=service,
        env=env,
        environment=environment,
        namespace=ctx.catalog.namespace(service, env),
        selector=f"app.kubernetes.io/name={service}",
        application=ctx.catalog.argocd_application(service, env),
    )


async def resolve_target(ctx: Context, service: str, env: str, *, verb: str) -> Target:
    """The target, if `ctx.user` may change it: the owning team or a platform admin."""
    target = lookup_target(ctx, service, env)
    owner = ctx.catalog.service(service).owner
    email = await ctx.directory.email_of(ctx.user)
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    if owner not in me.teams and not me.platform_admin:
        raise UsageError(
            f"Only the *{escape(owner)}* team, which owns `{escape(service)}`, or a "
            f"platform admin may {verb} it. Ask in "
            f"{escape(ctx.catalog.team(owner).slack_channel)}."
        )
    return target


def check_version(version: str) -> str:
    """The version as typed, if it is a tag or a digest; UsageError otherwise."""
    if not VERSION_PATTERN.fullmatch(version):
        shown = code(version[:60] + ("…" if len(version) > 60 else ""))
        raise UsageError(
            f"{shown} is not a version. Type an image tag such as `1.4.2` (letters, digits, "
            "`_`, `.` and `-`, at most 128, not starting with `.` or `-`) or a digest "
            "`sha256:` followed by 64 hex digits."
        )
    return version


def cluster_of(ctx: Context, target: Target) -> Cluster:
    """The Kubernetes cluster of the target's environment; UsageError if not configured."""
    clusters = ctx.adapters.kubernetes
    if clusters is None:
        raise UsageError(
            "Kubernetes is not configured on this bot (KUBECONFIG), so I cannot deploy or "
            "roll back. Ask the platform team."
        )
    try:
        return clusters.cluster(target.environment.cluster)
    except AdapterError as exc:
        raise UsageError(escape(str(exc))) from None


def gitops_of(ctx: Context) -> GitOps:
    gitops = ctx.adapters.argocd
    if gitops is None:
        raise UsageError(
            "Argo CD is not configured on this bot (ARGOCD_URL and ARGOCD_TOKEN), so I cannot "
            "deploy or roll back there. Ask the platform team."
        )
    return gitops


async def read_live(what: str, read: Awaitable[T]) -> T:
    """Await a read of the live state; an AdapterError becomes a message, not a trace."""
    try:
        return await read
    except AdapterError as exc:
        raise UsageError(f"I could not read {what}: {escape(str(exc))}") from None


async def live_deployments(cluster: Cluster, target: Target) -> list[RolloutStatus]:
    statuses = await read_live(
        f"the Deployments of {target.where}",
        cluster.deployments(target.namespace, selector=target.selector),
    )
    if not statuses:
        raise UsageError(
            f"No Deployment labelled `{escape(target.selector)}` in namespace "
            f"`{escape(target.namespace)}` (cluster `{escape(target.environment.cluster)}`): "
            f"{target.where} is not deployed yet (its pipeline's deploy job does that)."
        )
    return sorted(statuses, key=lambda s: s.deployment)


async def live_application(gitops: GitOps, target: Target) -> GitOpsApplication:
    app = await read_live(
        f"the Argo CD Application `{escape(target.application)}`",
        gitops.application(target.application),
    )
    if app is None:
        raise UsageError(
            f"Argo CD has no Application `{escape(target.application)}` for {target.where}."
        )
    return app


async def plan_deploy(ctx: Context, *, service: str, env: str, version: str) -> Deploy:
    """The Deploy that puts `version` into `service` in `env`, from the live state."""
    target = await resolve_target(ctx, service, env, verb="deploy")
    check_version(version)
    if target.backend == "argocd":
        app = await live_application(gitops_of(ctx), target)
        if app.auto_sync:
            raise UsageError(
                f"Automated sync is on for `{escape(app.name)}`: Argo CD deploys what git "
                "says. Merge the change to git instead, or roll back with "
                f"`/platform rollback {escape(service)} {escape(env)}`."
            )
        if app.revision == version:
            raise UsageError(f"{target.where} already runs git revision {code(version)}.")
        return Deploy(
            service=service,
            env=env,
            backend="argocd",
            version=version,
            git_revision=version,
            from_image=", ".join(app.images),
            from_revision=max((h.id for h in app.history), default=0),
            from_git_revision=app.revision,
        )
    statuses = await live_deployments(cluster_of(ctx, target), target)
    first = statuses[0]
    if not first.images:
        raise UsageError(f"The Deployment `{escape(first.deployment)}` has no container image.")
    image = with_version(first.images[0], version)
    if all(s.images[:1] == (image,) for s in statuses):
        raise UsageError(f"{target.where} already runs `{escape(image)}`; nothing to deploy.")
    return Deploy(
        service=service,
        env=env,
        version=version,
        image=image,
        from_image=first.images[0],
        from_revision=first.revision,
        deployments=tuple(s.deployment for s in statuses),
    )


async def plan_rollback(
    ctx: Context,
    *,
    service: str,
    env: str,
    to_revision: int | None = None,
    disable_auto_sync: bool = False,
) -> Rollback:
    """The Rollback of `service` in `env` to `to_revision` (default: the previous one).

    AutoSyncOn when Argo CD's automated sync is on and `disable_auto_sync` is False.
    """
    target = await resolve_target(ctx, service, env, verb="roll back")
    if target.backend == "argocd":
        return await _plan_argocd_rollback(
            ctx, target, to_revision=to_revision, disable_auto_sync=disable_auto_sync
        )
    cluster = cluster_of(ctx, target)
    statuses = await live_deployments(cluster, target)
    if len(statuses) > 1:
        names = ", ".join(code(s.deployment) for s in statuses)
        raise UsageError(
            f"{target.where} has {len(statuses)} Deployments ({names}); a rollback takes one. "
            "Deploy the version you want instead."
        )
    live = statuses[0]
    revisions = await read_live(
        f"the revisions of {target.where}", cluster.revisions(target.namespace, live.deployment)
    )
    wanted = _choose_revision(target, live.revision, revisions, to_revision)
    return Rollback(
        service=service,
        env=env,
        to_revision=wanted.number,
        from_revision=live.revision,
        from_image=", ".join(live.images),
        to_image=", ".join(wanted.images),
        deployment=live.deployment,
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


async def _plan_argocd_rollback(
    ctx: Context, target: Target, *, to_revision: int | None, disable_auto_sync: bool
) -> Rollback:
    app = await live_application(gitops_of(ctx), target)
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


# -- proposing ----------------------------------------------------------------------------


async def propose_release(
    ctx: Context, action: Action, *, reason: str | None = None, break_glass: bool = False
) -> Reply:
    """Hand the Action to `ctx.changes` and say what happens next."""
    service = action.affected_service() or ""
    try:
        proposal = await ctx.changes.propose(
            action,
            requested_by=ctx.user,
            idempotency_key=ctx.request_key,
            reply_channel=ctx.channel or None,
            announce_channel=ctx.catalog.channel_of_service(service),
            reason=reason,
            break_glass=break_glass,
        )
    except ChangeRefused as refused:
        return Reply(text=refused.message)
    change = "\n".join(action.change_lines())
    if not proposal.created:
        return Reply(text=f"Already asked; this request is Run `{proposal.run_id}`.\n{change}")
    if proposal.approval_id is not None:
        rule = f" (rule `{escape(proposal.rule)}`)" if proposal.rule else ""
        expires = (
            f", until {proposal.expires_at:%H:%M} UTC" if proposal.expires_at is not None else ""
        )
        return Reply(
            text=f"*Waiting for approval*{rule}{expires}: {escape(action.summary())}\n{change}"
        )
    glass = " :rotating_light: break-glass, without approval" if proposal.break_glass else ""
    return Reply(
        text=f"*Queued*{glass}: {escape(action.summary())}\n{change}\n"
        "Progress shows here and in the service's channel."
    )


async def start_rollback(
    ctx: Context,
    *,
    service: str,
    env: str,
    to_revision: int | None = None,
    reason: str | None = None,
    break_glass: bool = False,
) -> Reply:
    """Plan and propose a rollback; used by `/platform rollback` and the alert's button.

    Every refusal is a Reply for the person (never an exception), and with Argo CD's
    automated sync on it is a Reply with a button to turn it off and roll back.
    """
    try:
        action = await plan_rollback(ctx, service=service, env=env, to_revision=to_revision)
    except UsageError as exc:
        return Reply(text=exc.message)
    except AutoSyncOn as on:
        return auto_sync_refusal(on)
    return await propose_release(ctx, action, reason=reason, break_glass=break_glass)


def auto_sync_refusal(on: AutoSyncOn) -> Reply:
    """Nothing ran: Argo CD would refuse, and would undo a rollback while auto-sync is on."""
    target = on.target
    text = (
        f"Automated sync is on for `{escape(target.application)}`, so Argo CD refuses a "
        f"rollback of {target.where} (and would undo it). Nothing was changed. I can turn "
        f"auto-sync off and roll back to history id {on.to_revision}; you get a button to "
        "turn it back on after."
    )
    value = f"{target.service} {target.env} {on.to_revision}"
    return Reply(
        text=text,
        blocks=[
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": AUTO_SYNC_OFF_AND_ROLL_BACK,
                        "text": {"type": "plain_text", "text": "Turn off auto-sync and roll back"},
                        "style": "danger",
                        "value": value,
                    }
                ],
            },
        ],
    )


# -- executing ----------------------------------------------------------------------------


def change_cause(verb: str, what: str, context: StepContext) -> str:
    """`deploy 1.4.2 by U01ALICE (run 0f3a…)`: what `/platform history` reads back."""
    return f"{verb} {what} by {context.requested_by} (run {context.run_id})"


CHANGE_CAUSE_PATTERN = re.compile(
    r"^(?P<verb>deploy|rollback) (?P<what>.+) by (?P<user>[UW][A-Z0-9]+) \(run (?P<run>[\w-]+)\)$"
)


def rollout_line(status: RolloutStatus) -> str:
    return (
        f"{status.updated}/{status.desired} updated, {status.ready} ready, "
        f"{status.available} available"
    )


class ReleaseExecutor:
    """What the deploy and rollback executors share: the catalog lookups, the watches
    and the closing Grafana link."""

    def __init__(
        self,
        ports: Ports,
        *,
        poll_seconds: float = POLL_SECONDS,
        timeout_seconds: float = WATCH_TIMEOUT_SECONDS,
    ) -> None:
        self.ports = ports
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds

    def cluster(self, service: str, env: str) -> tuple[Cluster, str]:
        clusters = self.ports.adapters.kubernetes
        if clusters is None:
            raise StepFailed("Kubernetes is not configured on this bot (KUBECONFIG)")
        context = self.ports.catalog.environment(env).cluster
        try:
            cluster = clusters.cluster(context)
        except AdapterError as exc:
            raise StepFailed(str(exc)) from None
        return cluster, self.ports.catalog.namespace(service, env)

    def gitops(self, service: str, env: str) -> tuple[GitOps, str]:
        gitops = self.ports.adapters.argocd
        if gitops is None:
            raise StepFailed("Argo CD is not configured on this bot (ARGOCD_URL)")
        return gitops, self.ports.catalog.argocd_application(service, env)

    async def application(self, gitops: GitOps, name: str) -> GitOpsApplication:
        app = await _adapter_call(gitops.application(name))
        if app is None:
            raise StepFailed(f"Argo CD has no Application {name} any more")
        return app

    async def patiently(self, read: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await read(*args)` inside a watch: the change is made, so a failed read (a
        blip of the API server) is tried again; the third failure in a row fails the step."""
        attempt = 1
        while True:
            try:
                return await read(*args)
            except (AdapterError, StepFailed) as exc:
                if attempt == READ_ATTEMPTS:
                    raise StepFailed(str(exc)) from None
            attempt += 1
            await asyncio.sleep(self.poll_seconds)

    def watch_step(
        self,
        action: Deploy | Rollback,
        *,
        git_revision: str,
        deployments: Sequence[str],
        arrived: Callable[[RolloutStatus], bool],
    ) -> StepFunction:
        """The "Watch the rollout" step of a deploy or rollback, on either backend."""

        async def watch(context: StepContext) -> dict[str, Any]:
            if action.backend == "argocd":
                gitops, name = self.gitops(action.service, action.env)
                return await self.watch_application(
                    context, gitops, name, git_revision=git_revision
                )
            cluster, namespace = self.cluster(action.service, action.env)
            return await self.watch_kubernetes(
                context, cluster, namespace, deployments, arrived=arrived
            )

        return watch

    async def watch_kubernetes(
        self,
        context: StepContext,
        cluster: Cluster,
        namespace: str,
        deployments: Sequence[str],
        *,
        arrived: Callable[[RolloutStatus], bool],
    ) -> dict[str, Any]:
        """Poll until every Deployment's rollout is complete (and `arrived`), or fails."""
        started = time.monotonic()
        shown = ""
        while True:
            statuses = [
                await self.patiently(cluster.rollout_status, namespace, d) for d in deployments
            ]
            for status in statuses:
                if status.failed_reason:
                    raise StepFailed(f"{status.deployment}: {status.failed_reason}")
            if all(s.complete and arrived(s) for s in statuses):
                return {"revisions": {s.deployment: s.revision for s in statuses}}
            line = "; ".join(
                (f"{s.deployment}: " if len(statuses) > 1 else "") + rollout_line(s)
                for s in statuses
            )
            if line != shown:
                await context.report(line)
                shown = line
            if time.monotonic() - started > self.timeout_seconds:
                raise StepFailed(
                    f"the rollout did not finish within {self.timeout_seconds:.0f} s "
                    f"(last seen: {line})"
                )
            await asyncio.sleep(self.poll_seconds)

    async def watch_application(
        self, context: StepContext, gitops: GitOps, name: str, *, git_revision: str
    ) -> dict[str, Any]:
        """Poll until the Application's operation succeeded at `git_revision` and it is
        Healthy, or the operation failed."""
        started = time.monotonic()
        shown = ""
        while True:
            app = await self.patiently(self.application, gitops, name)
            if app.operation_phase in ("Failed", "Error"):
                raise StepFailed(
                    f"Argo CD: {app.operation_phase}: {app.operation_message or 'no message'}"
                )
            if (
                app.operation_phase in (None, "Succeeded")
                and app.revision == git_revision
                and app.health_status == "Healthy"
            ):
                return {"revision": app.revision}
            line = (
                f"operation {app.operation_phase or 'none'}, sync {app.sync_status}, "
                f"health {app.health_status}"
            )
            if line != shown:
                await context.report(line)
                shown = line
            if time.monotonic() - started > self.timeout_seconds:
                raise StepFailed(
                    f"Argo CD did not finish within {self.timeout_seconds:.0f} s "
                    f"(last seen: {line})"
                )
            await asyncio.sleep(self.poll_seconds)

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

    async def release_stale_reason(
        self, *, action: Deploy | Rollback, deployment: str | None
    ) -> str | None:
        """Why the live state no longer matches what was planned (and approved): plain
        text, which the approval card escapes."""
        try:
            if action.backend == "argocd":
                gitops, name = self.gitops(action.service, action.env)
                app = await self.application(gitops, name)
                if app.revision != action.from_git_revision:
                    return (
                        f"{action.env} moved since this was asked: now git revision "
                        f"{app.revision} (images {', '.join(app.images)})"
                    )
                return None
            cluster, namespace = self.cluster(action.service, action.env)
            status = await cluster.rollout_status(namespace, deployment or action.service)
        except (AdapterError, StepFailed) as exc:
            log.warning("could not check a release for staleness: %s", exc)
            return None
        if status.revision != action.from_revision or action.from_image.split(", ")[0] not in (
            status.images
        ):
            return (
                f"{action.env} moved since this was asked: now revision "
                f"{status.revision} (image {', '.join(status.images)})"
            )
        return None


class DeployExecutor(ReleaseExecutor):
    """Deploy: set the image (Kubernetes) or sync (Argo CD), watch, link."""

    action_type: ClassVar[type[Action]] = Deploy

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, Deploy)
        where = f"{action.service} in {action.env}"

        async def change(context: StepContext) -> dict[str, Any]:
            started = {"started_at": datetime.now(UTC).isoformat()}
            if action.backend == "argocd":
                gitops, name = self.gitops(action.service, action.env)
                app = await self.application(gitops, name)
                if app.revision == action.git_revision and app.operation_phase != "Failed":
                    return started  # a crash after the sync: it is done already
                await _adapter_call(gitops.sync(name, revision=action.git_revision or ""))
                return started
            cluster, namespace = self.cluster(action.service, action.env)
            cause = change_cause("deploy", action.version, context)
            for deployment in action.deployments:
                status = await _adapter_call(cluster.rollout_status(namespace, deployment))
                if status.images[:1] == (action.image,):
                    continue  # set already (a re-run after a crash)
                await _adapter_call(
                    cluster.set_image(
                        namespace, deployment, image=action.image or "", change_cause=cause
                    )
                )
            return started

        watch = self.watch_step(
            action,
            git_revision=action.git_revision or "",
            deployments=action.deployments,
            arrived=lambda s: s.images[:1] == (action.image,),
        )

        async def done(context: StepContext) -> dict[str, Any]:
            return await self.announce_done(
                context,
                service=action.service,
                env=action.env,
                what=f"Deployed `{escape(action.service)}` {code(action.version)} to "
                f"`{escape(action.env)}`",
            )

        verb = "Sync Argo CD" if action.backend == "argocd" else "Set the image"
        return [
            Step("change", f"{verb}: {where} to {action.version}", change),
            Step("watch", "Watch the rollout", watch),
            Step("done", "Grafana link", done),
        ]

    async def stale_reason(self, action: Action) -> str | None:
        assert isinstance(action, Deploy)
        first = action.deployments[0] if action.deployments else None
        return await self.release_stale_reason(action=action, deployment=first)


class RollbackExecutor(ReleaseExecutor):
    """Rollback: undo to a revision (Kubernetes) or to a history id (Argo CD, turning
    auto-sync off first when asked), watch, link; and the button to turn auto-sync on."""

    action_type: ClassVar[type[Action]] = Rollback

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, Rollback)
        steps: list[Step] = []
        if action.backend == "argocd" and action.disable_auto_sync:
            steps.append(Step("auto-sync-off", "Turn off Argo CD auto-sync", self._auto_sync_off))

        async def change(context: StepContext) -> dict[str, Any]:
            started = {"started_at": datetime.now(UTC).isoformat()}
            if action.backend == "argocd":
                await self._argocd_rollback(action)
                return started
            cluster, namespace = self.cluster(action.service, action.env)
            deployment = action.deployment or action.service
            status = await _adapter_call(cluster.rollout_status(namespace, deployment))
            if status.revision != action.from_revision:
                if ", ".join(status.images) == action.to_image:
                    return started  # rolled back already (a re-run after a crash)
                raise StepFailed(
                    f"{action.env} moved since this was planned: now revision {status.revision}"
                )
            await _adapter_call(
                cluster.rollback(
                    namespace,
                    deployment,
                    to_revision=action.to_revision,
                    change_cause=change_cause(
                        "rollback", f"to revision {action.to_revision}", context
                    ),
                )
            )
            return started

        watch = self.watch_step(
            action,
            git_revision=action.to_git_revision or "",
            deployments=[action.deployment or action.service],
            arrived=lambda s: (
                s.revision != action.from_revision and ", ".join(s.images) == action.to_image
            ),
        )

        async def done(context: StepContext) -> dict[str, Any]:
            output = await self.announce_done(
                context,
                service=action.service,
                env=action.env,
                what=f"Rolled back `{escape(action.service)}` in `{escape(action.env)}` to "
                + (
                    f"Argo CD history id {action.to_revision} "
                    f"(git `{escape(action.to_git_revision or '?')}`)"
                    if action.backend == "argocd"
                    else f"revision {action.to_revision} (`{escape(action.to_image)}`)"
                ),
            )
            if action.disable_auto_sync:
                await self._offer_auto_sync_back(action, context)
            return output

        title = (
            f"Argo CD rollback to history id {action.to_revision}"
            if action.backend == "argocd"
            else f"Roll back to revision {action.to_revision}"
        )
        steps += [
            Step("change", title, change),
            Step("watch", "Watch the rollout", watch),
            Step("done", "Grafana link", done),
        ]
        return steps

    async def _auto_sync_off(self, context: StepContext) -> dict[str, Any]:
        action = context.action
        assert isinstance(action, Rollback)
        gitops, name = self.gitops(action.service, action.env)
        app = await self.application(gitops, name)
        if app.auto_sync:
            await _adapter_call(gitops.set_auto_sync(name, enabled=False))
        return {"was_on": app.auto_sync}

    async def _argocd_rollback(self, action: Rollback) -> None:
        gitops, name = self.gitops(action.service, action.env)
        app = await self.application(gitops, name)
        if app.revision == action.to_git_revision and app.operation_phase != "Failed":
            return  # rolled back already (a re-run after a crash)
        if app.revision != action.from_git_revision:
            raise StepFailed(
                f"{action.env} moved since this was planned: now git revision {app.revision}"
            )
        try:
            await gitops.rollback(name, history_id=action.to_revision)
        except AutoSyncEnabled:
            raise StepFailed(
                "automated sync was turned on since this was planned; nothing was rolled back"
            ) from None
        except AdapterError as exc:
            raise StepFailed(str(exc)) from None

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
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": AUTO_SYNC_BACK_ON,
                            "text": {"type": "plain_text", "text": "Turn auto-sync back on"},
                            "value": f"{action.service} {action.env}",
                        }
                    ],
                },
            ],
            key=f"run:{context.run_id}:auto-sync",
        )

    async def stale_reason(self, action: Action) -> str | None:
        assert isinstance(action, Rollback)
        return await self.release_stale_reason(action=action, deployment=action.deployment)


class AutoSyncExecutor(ReleaseExecutor):
    """Turn Argo CD's automated sync on or off (checked first, so a re-run is harmless)."""

    action_type: ClassVar[type[Action]] = SetAutoSync

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, SetAutoSync)

        async def switch(context: StepContext) -> dict[str, Any]:
            gitops, name = self.gitops(action.service, action.env)
            app = await self.application(gitops, name)
            if app.auto_sync != action.enabled:
                await _adapter_call(gitops.set_auto_sync(name, enabled=action.enabled))
            return {"changed": app.auto_sync != action.enabled}

        state = "on" if action.enabled else "off"
        return [Step("switch", f"Turn Argo CD auto-sync {state}", switch)]


def executors(ports: Ports) -> list[DeployExecutor | RollbackExecutor | AutoSyncExecutor]:
    """The executors of Deploy, Rollback and SetAutoSync, found by bot.plugins."""
    return [DeployExecutor(ports), RollbackExecutor(ports), AutoSyncExecutor(ports)]


# -- small helpers ------------------------------------------------------------------------


async def _adapter_call(call: Awaitable[T]) -> T:
    """An adapter call inside a step; its AdapterError fails the step with its message."""
    try:
        return await call
    except AdapterError as exc:
        raise StepFailed(str(exc)) from None


def _started_at(context: StepContext) -> datetime | None:
    value = context.outputs.get("change", {}).get("started_at")
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def parse_revision(text: str, *, usage: str) -> int:
    """A revision (Kubernetes) or history id (Argo CD, from 0) as typed: a whole number."""
    if not text.isdigit() or len(text) > 9:
        raise UsageError(
            f"{code(text[:40])} is not a revision; type its number, as "
            "`/platform history` shows it.",
            usage=usage,
        )
    return int(text)
