"""Clean up a failed new service: undo what its Run made, step by step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from features.kit.context import Button, Context, Ports
from features.kit.rights import is_requester_or_admin
from features.new_service.provisioning import (
    NewServiceExecutor,
    _policy_name,
)
from features.new_service.request import (
    CLEANUP_ACTION_ID,
    CleanUpService,
    NewService,
)
from kernel.actions import Action, Executor, Step, StepContext
from kernel.errors import AdapterError, ChangeRefused, StepFailed
from kernel.ids import RunId, ServiceName
from kernel.interactions import Click, Reply
from kernel.mrkdwn import code


class CleanUpExecutor:
    """The steps of a CleanUpService: what NewService made, undone in reverse order."""

    action_type = CleanUpService

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    def steps(self, action: Action) -> Sequence[Step]:
        return [
            Step("catalog", "Remove the catalog entry", self.catalog),
            Step("vault", "Delete Vault paths, policies and roles", self.vault),
            Step("kubernetes", "Delete Kubernetes namespaces", self.kubernetes),
            Step("gitlab", "Delete the GitLab project", self.gitlab),
        ]

    async def catalog(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        try:
            existed = await self.ports.services.unregister(
                ServiceName(action.service), by=context.requested_by
            )
        except ValueError as exc:  # defined in platform.yml: never ours to remove
            raise StepFailed(str(exc)) from None
        return {"removed": existed}

    async def vault(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        vault = self.ports.adapters.require("vault")
        for env in action.environments:
            name = _policy_name(action.team, action.service, env)
            await context.report(f"{env}: path, policy and role {name}")
            try:
                await vault.delete_service(action.team, action.service, env, policy=name, role=name)
            except AdapterError as exc:
                raise StepFailed(f"{env}: {exc.message}") from None
        return {"environments": list(action.environments)}

    async def kubernetes(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        clusters = self.ports.adapters.require("kubernetes")
        deleted = []
        for env in action.environments:
            namespace = self.ports.catalog.namespace(action.service, env)
            await context.report(f"namespace {namespace}")
            try:
                cluster = clusters.cluster(self.ports.catalog.environment(env).cluster)
                if await cluster.delete_namespace(namespace):
                    deleted.append(namespace)
            except AdapterError as exc:
                raise StepFailed(f"{env}: {exc.message}") from None
        return {"deleted": deleted}

    async def gitlab(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        gitlab = self.ports.adapters.require("gitlab")
        try:
            existed = await gitlab.delete_project(action.repository)
        except AdapterError as exc:
            raise StepFailed(exc.message) from None
        return {"deleted": action.repository if existed else None}


def _clean_up(action: Action) -> CleanUpService:
    assert isinstance(action, CleanUpService)
    return action


class CleanUpButton(Button):
    """Clean up after a failed new service: the requester or a platform admin may."""

    action_id = CLEANUP_ACTION_ID

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        run_id = RunId(click.value[:64])
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
        # Closing the failed Run first (conditional on it being failed) takes its Retry
        # away, so nobody provisions again what is being cleaned up.
        if not await runs.close(run_id, by=click.user, reason="closed to clean up"):
            return Reply(text="This Run is not failed (any more), so there is nothing to clean up.")
        cleanup = CleanUpService(
            service=action.service,
            team=action.team,
            environments=action.environments,
            repository=action.repository,
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


def executors(ports: Ports) -> list[Executor]:
    """The executors of this module's Actions, with the ports they use."""
    return [NewServiceExecutor(ports), CleanUpExecutor(ports)]
