"""Clean up a failed new service: undo what its Run made, every part attempted.

The service stays in the catalog, marked as being removed, until all of it is gone: that
entry is the record of what is left (`/platform status` and `/platform audit` find it, and
nobody can take the name meanwhile). Vault, Kubernetes and GitLab are each attempted
whatever happened to the others (`Step.keep_going`), each says how it ended, and the entry
goes only once they all succeeded; otherwise it says what remains, and Retry does only the
parts that failed.

The real systems do not delete at once: Kubernetes keeps a deleted namespace Terminating
until its content is gone (the step waits for that), and GitLab only marks a project for
deletion until a second DELETE removes it for good, where the instance allows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from features.kit.context import Button, Context, Ports
from features.kit.rights import is_requester_or_admin
from features.new_service.backup_schedules import remove_schedules
from features.new_service.provisioning import (
    NewServiceExecutor,
    _policy_name,
)
from features.new_service.request import (
    CLEANUP_ACTION_ID,
    CleanUpService,
    NewService,
)
from kernel.actions import Action, Executor, Step, StepContext, StepFunction
from kernel.blocks import actions, button, section
from kernel.errors import AdapterError, ChangeRefused, StepFailed
from kernel.ids import RunId, ServiceName
from kernel.interactions import Click, Reply
from kernel.mrkdwn import code, escape
from kernel.ports.platform import AuditEntry
from kernel.ports.systems import SERVICE_LABEL, Cluster, ProjectRemoval, ServiceDatabase

PARTS = ("postgres", "vault", "kubernetes", "gitlab")
"""The steps that remove something; the catalog entry goes once all of them are done."""

CONFIRM_DROP = "drop-databases"
"""The Clean up button's value says this once the person saw which databases go."""


def _parts(action: CleanUpService) -> list[str]:
    return [p for p in PARTS if p != "postgres" or action.database_environments]


RETENTION = "its retention period (30 days unless your GitLab admins changed it)"


class CleanUpExecutor:
    """The steps of a CleanUpService: what NewService made, undone in reverse order."""

    action_type = CleanUpService

    namespace_wait: float = 300.0
    """Seconds to wait for deleted namespaces to be gone before saying what holds them."""
    poll_every: float = 2.0

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    def steps(self, action: Action) -> Sequence[Step]:
        clean_up = _clean_up(action)
        postgres = [
            Step(
                "postgres",
                f"Drop PostgreSQL databases {', '.join(clean_up.databases)}, their roles and "
                "Vault roles",
                self.postgres,
                keep_going=True,
            )
        ]
        steps = [
            Step("record", "Keep the catalog entry while anything is left", self.record),
            *(postgres if clean_up.database_environments else []),
            Step("vault", "Delete Vault paths, policies and roles", self.vault, keep_going=True),
            Step(
                "kubernetes",
                "Delete Kubernetes namespaces (and wait until they are gone)",
                self.kubernetes,
                keep_going=True,
            ),
            Step("gitlab", "Delete the GitLab project", self.gitlab, keep_going=True),
            Step("unregister", "Remove the catalog entry", self.unregister),
        ]
        return [
            Step(s.name, s.title, self._audited(s.name, s.run), keep_going=s.keep_going)
            for s in steps
        ]

    def _audited(self, name: str, run: StepFunction) -> StepFunction:
        """Every Clean up step is an audit entry (`cleanup.<step>`), done or failed."""

        async def step(context: StepContext) -> dict[str, Any] | None:
            try:
                output = await run(context) or {}
            except (StepFailed, AdapterError) as exc:
                reason = exc.message if isinstance(exc, AdapterError) else str(exc)
                await self._audit(context, f"cleanup.{name}", {"error": reason[:500]})
                raise
            detail = {"outcome": str(output.get("outcome", "done"))[:500]}
            await self._audit(context, f"cleanup.{name}", detail)
            return output

        return step

    async def _audit(self, context: StepContext, event: str, detail: dict[str, Any]) -> None:
        await self.ports.audit.record(
            AuditEntry.of(
                context.requested_by,
                event,
                action=context.action,
                run_id=context.run_id,
                detail=detail,
            )
        )

    async def record(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        try:
            await self.ports.services.record_removal(
                ServiceName(action.service),
                _definition(action),
                remains=[self._part(action, name) for name in _parts(action)],
                by=context.requested_by,
            )
        except ValueError as exc:  # defined in platform.yml: never ours to remove
            raise StepFailed(str(exc)) from None
        return {"outcome": "`/platform status` shows what is left until all of it is gone"}

    async def postgres(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        problems, removed = [], []
        for env in action.database_environments:
            db = self.ports.catalog.database(action.service, env)
            if db is None:  # the environment no longer names a server: nothing to reach
                problems.append(f"{env}: no database server in the catalog any more")
                continue
            await context.report(f"{env}: database {db.database}")
            try:
                engine = self.ports.adapters.require("databases")
                removed += await engine.drop_database(db)
            except AdapterError as exc:
                problems.append(f"{env}: {exc.message}")
        if problems:
            raise StepFailed("; ".join(problems))
        return {
            "removed": removed,
            "outcome": f"{', '.join(action.databases)} dropped" if removed else "none were there",
        }

    async def vault(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        vault = self.ports.adapters.require("vault")
        problems = []
        for env in action.environments:
            name = _policy_name(action.team, action.service, env)
            await context.report(f"{env}: path, policy and role {name}")
            try:
                await vault.delete_service(action.team, action.service, env, policy=name, role=name)
            except AdapterError as exc:
                problems.append(f"{env}: {exc.message}")
        if problems:
            raise StepFailed("; ".join(problems))
        envs = ", ".join(action.environments)
        return {"environments": list(action.environments), "outcome": f"gone in {envs}"}

    async def kubernetes(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        clusters = self.ports.adapters.require("kubernetes")
        deleted: dict[str, Cluster] = {}
        problems, left_alone = [], []
        try:
            backups = await remove_schedules(
                self.ports, context, service=action.service, environments=action.environments
            )
        except StepFailed as exc:
            backups, problems = "", [str(exc)]
        for env in action.environments:
            namespace = self.ports.catalog.namespace(action.service, env)
            await context.report(f"deleting namespace {namespace}")
            try:
                cluster = clusters.cluster(self.ports.catalog.environment(env).cluster)
                state = await cluster.describe_namespace(namespace)
                if state is not None and not _made_for(state.labels, action.service):
                    left_alone.append(namespace)  # someone else's: never ours to delete
                elif state is not None and await cluster.delete_namespace(namespace):
                    deleted[namespace] = cluster
            except AdapterError as exc:
                problems.append(f"{env}: {exc.message}")
        problems += await self._until_gone(context, deleted)
        if problems:
            raise StepFailed("; ".join(problems))
        outcome = f"{', '.join(deleted)} gone" if deleted else "none were there"
        if left_alone:
            outcome += f"; left alone, not made for {action.service}: {', '.join(left_alone)}"
        if backups:
            outcome += f"; {backups}"
        return {"deleted": list(deleted), "outcome": outcome}

    async def _until_gone(self, context: StepContext, deleted: dict[str, Cluster]) -> list[str]:
        """Wait for deleted namespaces to be gone (Kubernetes keeps each Terminating until
        its content is deleted and its finalizers are done); what still holds each one."""
        waiting = dict(deleted)
        holding: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + self.namespace_wait, 0.1
        while waiting:
            for namespace, cluster in list(waiting.items()):
                try:
                    state = await cluster.describe_namespace(namespace)
                except AdapterError as exc:
                    holding[namespace] = exc.message
                    continue
                if state is None:
                    del waiting[namespace]
                    holding.pop(namespace, None)
                else:
                    holding[namespace] = state.waiting_for or "its content is being deleted"
            if not waiting:
                break
            await context.report("; ".join(f"{ns}: Terminating ({holding[ns]})" for ns in waiting))
            if loop.time() >= deadline:
                held = "; ".join(f"{ns} ({holding[ns]})" for ns in waiting)
                waited = _duration(self.namespace_wait)
                return [f"still Terminating after {waited}: {held}. Retry waits again"]
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.poll_every)
        return []

    async def gitlab(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        gitlab = self.ports.adapters.require("gitlab")
        await context.report(f"deleting {action.repository}")
        try:
            removal = await gitlab.delete_project(action.repository, project_id=action.project_id)
        except AdapterError as exc:
            raise StepFailed(exc.message) from None
        return {
            "removal": removal.outcome,
            "path": removal.path,
            "marked_on": removal.marked_on.isoformat() if removal.marked_on else None,
            "outcome": _removal_said(action.repository, removal),
        }

    async def unregister(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        left = [name for name in _parts(action) if name not in context.outputs]
        if left:
            remains = [self._part(action, name) for name in left]
            await self.ports.services.record_removal(
                ServiceName(action.service),
                _definition(action),
                remains=remains,
                by=context.requested_by,
            )
            raise StepFailed(
                f"kept while these remain: {'; '.join(remains)}. Retry does only what failed"
            )
        try:
            await self.ports.services.unregister(
                ServiceName(action.service), by=context.requested_by
            )
        except ValueError as exc:
            raise StepFailed(str(exc)) from None
        return {"outcome": f"all gone; the name {action.service} is free"}

    def _part(self, action: CleanUpService, name: str) -> str:
        """One thing Clean up removes, named for people."""
        envs = ", ".join(action.environments)
        if name == "postgres":
            return f"PostgreSQL databases {', '.join(action.databases)}"
        if name == "vault":
            return f"Vault paths, policies and roles {action.team}-{action.service}-* ({envs})"
        if name == "kubernetes":
            catalog = self.ports.catalog
            namespaces = ", ".join(
                catalog.namespace(action.service, e) for e in action.environments
            )
            return f"namespaces {namespaces}"
        return f"GitLab project {action.repository}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _made_for(labels: dict[str, str], service: str) -> bool:
    """Whether a namespace's labels say the bot made it for `service` (or say nothing)."""
    said = labels.get(SERVICE_LABEL)
    return said is None or said == service


def _removal_said(repository: str, removal: ProjectRemoval) -> str:
    if removal.outcome == "removed":
        return f"{repository} removed for good"
    if removal.outcome == "absent":
        return f"{repository} was not there (any more)"
    marked = f" on {removal.marked_on:%Y-%m-%d}" if removal.marked_on else ""
    why = f" ({removal.reason.rstrip('.')})" if removal.reason else ""
    name = (
        f"the name {repository} is free already"
        if removal.name_free
        else f"the name {repository} stays taken until then"
    )
    return (
        f"GitLab marked it for deletion{marked} and will not remove it at once here{why}: it "
        f"keeps it as {removal.path} for {RETENTION}, then removes it; {name}"
    )


def _definition(action: CleanUpService) -> dict[str, Any]:
    """The catalog entry of a service that failed before it was registered."""
    return {
        "owner": action.team,
        "environments": list(action.environments),
        "repository": action.repository,
    }


def _clean_up(action: Action) -> CleanUpService:
    assert isinstance(action, CleanUpService)
    return action


class CleanUpButton(Button):
    """Clean up after a failed new service: the requester or a platform admin may."""

    action_id = CLEANUP_ACTION_ID

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        run_id_text, _, confirmed = click.value.partition("|")
        run_id = RunId(run_id_text[:64])
        runs = ctx.ports.run_control
        action = await runs.action(run_id)
        if not isinstance(action, NewService):
            return Reply(text="That is not a new-service Run; nothing was cleaned up.")
        requester = await runs.requested_by(run_id)
        if requester is None or not await is_requester_or_admin(ctx, requester, click.user):
            return Reply(
                text=f"Only <@{requester}>, who asked for this service, or a platform admin "
                "may clean it up."
            )
        databases = {
            env: db.database
            for env in action.environments
            if "postgres" in action.steps
            and (db := _database_or_none(ctx, action.service, env)) is not None
        }
        if databases and confirmed != CONFIRM_DROP:
            return _confirm_drop(run_id, action.service, databases)
        made = (await runs.outputs(run_id)).get("gitlab", {})
        # Closing the failed Run first (conditional on it being failed) takes its Retry
        # away, so nobody provisions again what is being cleaned up.
        if not await runs.close(run_id, by=click.user, reason="closed to clean up"):
            return Reply(text="This Run is not failed (any more), so there is nothing to clean up.")
        cleanup = CleanUpService(
            service=action.service,
            team=action.team,
            environments=action.environments,
            repository=action.repository,
            project_id=int(made["project_id"]) if made.get("project_id") else None,
            databases=tuple(databases.values()),
            database_environments=tuple(databases),
        )
        try:
            proposal = await ctx.changes.propose(
                cleanup,
                requested_by=click.user,
                idempotency_key=f"new-service.cleanup:{run_id}",
                reply_channel=click.channel,
            )
        except ChangeRefused as refused:
            return Reply(text=refused.message)
        if not proposal.created:
            return Reply(
                text="Clean up was already asked for; see its progress message (and its Retry)."
            )
        return Reply(text=f"Cleaning up {code(action.service)}; follow the progress message.")


def _database_or_none(ctx: Context, service: str, env: str) -> ServiceDatabase | None:
    try:
        return ctx.catalog.database(service, env)
    except (ValueError, LookupError):
        return None


def _confirm_drop(run_id: RunId, service: str, databases: dict[str, str]) -> Reply:
    """Clean up drops data: the person sees which databases before anything goes."""
    names = ", ".join(f"{code(name)} ({escape(env)})" for env, name in databases.items())
    text = (
        f":warning: Clean up of {code(service)} drops the PostgreSQL databases {names} "
        "and everything in them, with their roles and Vault roles. This cannot be undone."
    )
    confirm = button(
        CLEANUP_ACTION_ID,
        f"Drop {', '.join(databases.values())} and clean up"[:75],
        value=f"{run_id}|{CONFIRM_DROP}",
        style="danger",
    )
    return Reply(text=text, blocks=[section(text), actions(confirm)])


def executors(ports: Ports) -> list[Executor]:
    """The executors of this module's Actions, with the ports they use."""
    return [NewServiceExecutor(ports), CleanUpExecutor(ports)]
