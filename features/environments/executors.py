"""Carrying out environments: create (the row and its timers first, then the namespace,
the workload, the rollout, the announcement), extend (new end, new timers) and delete
(claim, delete the namespace, wait until it is gone, say so), each step checking first.

Creation writes the row and its end's timer before anything exists in the cluster, so no
namespace is ever made without the timer that removes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.audit import record_in
from engine.timers import cancel
from features.environments.actions import (
    CreateEnvironment,
    CreateLargeEnvironment,
    DeleteEnvironment,
    ExtendEnvironment,
    ExtendEnvironmentBeyondMax,
    hours_text,
)
from features.environments.desk import Environment, EnvironmentDesk, environment_of, timer_keys
from features.environments.tables import EnvironmentRow
from features.kit.context import Ports
from kernel.actions import Action, Executor, Step, StepContext
from kernel.blocks import section
from kernel.errors import AdapterError, StepFailed
from kernel.mrkdwn import code, escape
from kernel.ports.platform import AuditEntry
from kernel.ports.systems import SERVICE_LABEL, Cluster, NamespaceSpec, WorkloadSpec

ENV_LABEL = "platform.example.com/on-demand"
ROLLOUT_SECONDS = 120.0
GONE_SECONDS = 60.0
POLL_SECONDS = 0.2


class _EnvExecutor:
    def __init__(self, ports: Ports, desk: EnvironmentDesk) -> None:
        self.ports, self.desk = ports, desk

    def cluster(self, context: str) -> Cluster:
        return self.ports.adapters.require("kubernetes").cluster(context)

    async def say(self, env: Environment, text: str, *, key: str) -> None:
        """A reply in the environment's thread in the team channel."""
        await self.ports.messenger.post(env.channel, text=text, key=key, thread_key=env.thread_key)


class CreateExecutor(_EnvExecutor):
    action_type: ClassVar[type[Action]] = CreateEnvironment

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, CreateEnvironment)
        return [
            Step(
                "record",
                f"Record it and schedule its end ({hours_text(action.hours)})",
                self.record,
            ),
            Step(
                "namespace",
                f"Namespace {action.namespace} with quota, limits, policies",
                self.namespace,
            ),
            Step("deploy", f"Deploy {action.service} {action.version}", self.deploy),
            Step("rollout", "Wait for the rollout", self.rollout),
            Step("announce", "Announce it in the team channel", self.announce),
        ]

    async def record(self, context: StepContext) -> dict[str, Any]:
        action = _create(context.action)

        def save(session: Session) -> str | None:
            row = session.get(EnvironmentRow, context.run_id)
            if row is not None:
                return None
            clash = session.query(EnvironmentRow).filter(
                EnvironmentRow.name == action.name, EnvironmentRow.state != "deleted"
            )
            if clash.count():
                return f"an environment called {action.name} exists already"
            now = self.desk.clock.now()
            row = EnvironmentRow(
                id=context.run_id,
                name=action.name,
                service=action.service,
                team=action.team,
                template=action.env,
                cluster=action.cluster,
                namespace=action.namespace,
                version=action.version,
                image=action.image,
                size=action.size,
                cpu=action.cpu,
                url=f"https://{action.host}" if action.host else None,
                creator=context.requested_by,
                channel=self.ports.catalog.channel_of_service(action.service),
                preview=action.preview.model_dump() if action.preview else None,
                state="creating",
                generation=0,
                created_at=now,
                expires_at=now + timedelta(hours=action.hours),
            )
            session.add(row)
            session.flush()
            self.desk.schedule_lifetime(session, row)
            record_in(
                session,
                AuditEntry.of(
                    context.requested_by,
                    "env.created",
                    action=action,
                    run_id=context.run_id,
                    detail={"environment": action.name, "until": row.expires_at.isoformat()},
                ),
            )
            return None

        refused = await self.desk.db.run(save)
        if refused:
            raise StepFailed(refused)
        return {"environment": action.name}

    async def still_wanted(self, context: StepContext) -> None:
        """StepFailed if the environment was deleted meanwhile: never make in a cluster
        what a teardown already removed (or is removing)."""
        env = await self.desk.get(context.run_id)
        if env is None or env.state not in ("creating", "failed"):
            raise StepFailed("this environment was deleted while it was being made")

    async def namespace(self, context: StepContext) -> dict[str, Any]:
        action = _create(context.action)
        await self.still_wanted(context)
        catalog = self.ports.catalog
        spec = NamespaceSpec(
            name=action.namespace,
            team=action.team,
            service=action.service,
            environment=action.name,
            rbac_group=catalog.kubernetes_group(action.team),
            service_account=action.service,
            quota=dict(action.quota),
        )
        created = await self._failing(context, self.cluster(action.cluster).ensure_namespace(spec))
        return {"namespace": action.namespace, "created": created}

    async def deploy(self, context: StepContext) -> dict[str, Any]:
        action = _create(context.action)
        await self.still_wanted(context)
        spec = WorkloadSpec(
            namespace=action.namespace,
            name=action.service,
            image=action.image,
            labels={SERVICE_LABEL: action.service, ENV_LABEL: action.name},
            host=action.host,
            change_cause=f"env create {action.version} by {context.requested_by} "
            f"(run {context.run_id})",
        )
        changed = await self._failing(context, self.cluster(action.cluster).ensure_workload(spec))
        return {"changed": changed}

    async def rollout(self, context: StepContext) -> dict[str, Any]:
        action = _create(context.action)
        cluster = self.cluster(action.cluster)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROLLOUT_SECONDS
        while True:
            status = await self._failing(
                context, cluster.rollout_status(action.namespace, action.service)
            )
            if status.complete:
                return {"ready": status.ready, "revision": status.revision}
            if status.failed_reason:
                await self._failed(context, status.failed_reason)
                raise StepFailed(status.failed_reason)
            if loop.time() > deadline:
                await self._failed(context, "the rollout did not finish in time")
                raise StepFailed(
                    f"{action.service} was not ready after {ROLLOUT_SECONDS:g}s "
                    f"({status.ready}/{status.desired} ready)"
                )
            await asyncio.sleep(POLL_SECONDS)

    async def announce(self, context: StepContext) -> dict[str, Any]:
        action = _create(context.action)

        def ready(session: Session) -> Environment | None:
            session.execute(
                update(EnvironmentRow)
                .where(EnvironmentRow.id == context.run_id, EnvironmentRow.state == "creating")
                .values(state="ready", ready_at=self.desk.clock.now())
            )
            row = session.get(EnvironmentRow, context.run_id)
            return environment_of(row) if row is not None else None

        env = await self.desk.db.run(ready)
        if env is None or env.state != "ready":
            raise StepFailed("this environment was deleted while it was being made")
        grafana = self.ports.adapters.grafana
        dashboard = self.ports.catalog.service(action.service).grafana_dashboard
        links = []
        if env.url:
            links.append(f"<{env.url}|{escape(env.url)}>")
        if grafana is not None:
            link = grafana.dashboard(
                dashboard or f"{action.service}-overview",
                variables={"service": action.service, "namespace": action.namespace},
            )
            links.append(f"<{link}|Grafana>")
        text = (
            f":seedling: {env.where} is ready: {code(action.image)} in "
            f"{code(action.namespace)}, created by <@{env.creator}>, deleted by itself at "
            f"{env.expires_at:%Y-%m-%d %H:%M} UTC. " + " · ".join(links)
        )
        await self.ports.messenger.post(
            env.channel,
            text=text,
            blocks=[section(text), self.desk.buttons(env)],
            key=env.thread_key,
        )
        if action.preview is not None:
            await self._note(action, env)
        return {"url": env.url, "channel": env.channel}

    async def _note(self, action: CreateEnvironment, env: Environment) -> None:
        preview = action.preview
        gitlab = self.ports.adapters.gitlab
        if preview is None or gitlab is None:
            return
        where = env.url or f"namespace `{env.namespace}`"
        body = (
            f"Preview environment `{env.name}` is ready: {where} "
            f"(deleted when this merge request is merged or closed, or at "
            f"{env.expires_at:%Y-%m-%d %H:%M} UTC)."
        )
        try:
            await gitlab.note_merge_request(preview.project_id, preview.iid, body)
        except AdapterError as exc:  # the environment is there; say the note failed
            await self.say(
                env,
                f":warning: The merge request note failed: {escape(exc.message)}",
                key=f"env-note:{env.id}",
            )

    async def _failing(self, context: StepContext, call: Any) -> Any:
        try:
            return await call
        except AdapterError as exc:
            await self._failed(context, exc.message)
            raise StepFailed(exc.message) from None

    async def _failed(self, context: StepContext, error: str) -> None:
        def mark(session: Session) -> None:
            session.execute(
                update(EnvironmentRow)
                .where(EnvironmentRow.id == context.run_id, EnvironmentRow.state == "creating")
                .values(state="failed", last_error=error[:500])
            )

        await self.desk.db.run(mark)


class CreateLargeExecutor(CreateExecutor):
    action_type: ClassVar[type[Action]] = CreateLargeEnvironment


class ExtendExecutor(_EnvExecutor):
    action_type: ClassVar[type[Action]] = ExtendEnvironment

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, ExtendEnvironment)

        async def extend(context: StepContext) -> dict[str, Any]:
            def push(session: Session) -> Environment | None:
                row = session.get(EnvironmentRow, action.env_id)
                if row is None:
                    return None
                if row.generation == action.from_generation + 1:  # a re-run: done already
                    return environment_of(row)
                until = row.expires_at + timedelta(hours=action.hours)
                done = session.execute(
                    update(EnvironmentRow)
                    .where(
                        EnvironmentRow.id == action.env_id,
                        EnvironmentRow.state.in_(("ready", "failed", "creating")),
                        EnvironmentRow.generation == action.from_generation,
                    )
                    .values(expires_at=until, generation=action.from_generation + 1)
                )
                if not getattr(done, "rowcount", 0):
                    return None
                cancel(session, timer_keys(row.id, action.from_generation, self.desk.settings))
                session.refresh(row)
                self.desk.schedule_lifetime(session, row)
                record_in(
                    session,
                    AuditEntry.of(
                        context.requested_by,
                        "env.extended",
                        action=action,
                        run_id=context.run_id,
                        detail={"environment": row.name, "until": until.isoformat()},
                    ),
                )
                return environment_of(row)

            env = await self.desk.db.run(push)
            if env is None:
                raise StepFailed("this environment ended or changed since Extend was asked")
            await self.say(
                env,
                f":hourglass_flowing_sand: {env.where} now lives until "
                f"{env.expires_at:%Y-%m-%d %H:%M} UTC (extended by <@{context.requested_by}>).",
                key=f"env-extended:{env.id}:{env.generation}",
            )
            return {"until": env.expires_at.isoformat()}

        return [Step("extend", f"Extend by {hours_text(action.hours)}", extend)]


class ExtendBeyondMaxExecutor(ExtendExecutor):
    action_type: ClassVar[type[Action]] = ExtendEnvironmentBeyondMax


class DeleteExecutor(_EnvExecutor):
    action_type: ClassVar[type[Action]] = DeleteEnvironment

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, DeleteEnvironment)

        async def claim(context: StepContext) -> dict[str, Any]:
            outcome = await self.desk.db.run(lambda s: self.desk.claim_teardown(s, action))
            return {"outcome": outcome}

        async def teardown(context: StepContext) -> dict[str, Any]:
            outcome = context.outputs.get("claim", {}).get("outcome")
            if outcome != "claimed":
                return {"skipped": outcome}
            env = await self.desk.get(action.env_id)
            assert env is not None
            try:
                cluster = self.cluster(env.cluster)
                await cluster.delete_namespace(env.namespace)
                left = await self._wait_gone(cluster, env.namespace)
                if left is not None:
                    raise AdapterError("Kubernetes", left)
            except AdapterError as exc:
                error = exc.message
                when = await self.desk.db.run(lambda s: self.desk.retry_teardown(s, action, error))
                await self.say(
                    env,
                    f":warning: Deleting {env.where} failed: {escape(error)}. It stays listed "
                    f"as deleting; trying again at {when:%H:%M} UTC.",
                    key=f"env-teardown-failed:{env.id}:{action.attempt}",
                )
                raise StepFailed(f"{error}; trying again at {when:%H:%M} UTC") from None
            gone = await self.desk.db.run(lambda s: self.desk.finish_teardown(s, action))
            if gone is not None:
                await self.say(gone, self._why(gone, action), key=f"env-deleted:{gone.id}")
                await self._note(gone, action)
            return {"namespace": env.namespace}

        return [
            Step("claim", "Check the environment is due", claim),
            Step("teardown", f"Delete the namespace of {action.name}", teardown),
        ]

    async def _wait_gone(self, cluster: Cluster, namespace: str) -> str | None:
        """None once the namespace is gone; else what it still waits for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GONE_SECONDS
        while True:
            state = await cluster.describe_namespace(namespace)
            if state is None:
                return None
            if loop.time() > deadline:
                waits = f": {state.waiting_for}" if state.waiting_for else ""
                return f"namespace {namespace} is still {state.phase}{waits}"
            await asyncio.sleep(POLL_SECONDS)

    @staticmethod
    def _why(env: Environment, action: DeleteEnvironment) -> str:
        how = {
            "expired": "its time was up",
            "deleted": f"deleted by <@{action.by}>",
            "merged": "its merge request was merged",
            "closed": "its merge request was closed",
            "unlabelled": "its merge request lost the preview label",
        }[action.why]
        return (
            f":wastebasket: {env.where} is gone ({how}); namespace {code(env.namespace)} deleted."
        )

    async def _note(self, env: Environment, action: DeleteEnvironment) -> None:
        gitlab = self.ports.adapters.gitlab
        preview = env.preview
        if gitlab is None or not preview:
            return
        try:
            await gitlab.note_merge_request(
                int(preview["project_id"]),
                int(preview["iid"]),
                f"Preview environment `{env.name}` was deleted ({action.why}).",
            )
        except AdapterError:
            return  # the environment is gone; the thread says so already


def _create(action: Action) -> CreateEnvironment:
    assert isinstance(action, CreateEnvironment)
    return action


def executors_for(desk: EnvironmentDesk) -> Any:
    def build(ports: Ports) -> list[Executor]:
        return [
            CreateExecutor(ports, desk),
            CreateLargeExecutor(ports, desk),
            ExtendExecutor(ports, desk),
            ExtendBeyondMaxExecutor(ports, desk),
            DeleteExecutor(ports, desk),
        ]

    return build
