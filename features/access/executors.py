"""Carrying out access changes: grant (end scheduled first, then the RoleBinding), extend
(new end, new timers) and revoke (claim, unbind, announce), each step checking first.

A grant writes its row and its end's timer before it creates the RoleBinding, so no
binding ever exists without the timer that removes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.audit import record_in
from engine.timers import cancel
from features.access.actions import (
    ExtendAccess,
    GrantAccess,
    RevokeAccess,
    duration_text,
)
from features.access.desk import AccessDesk, Grant, grant_of, timer_keys
from features.access.tables import AccessGrantRow
from features.kit.context import Ports
from kernel.actions import Action, Executor, Step, StepContext
from kernel.errors import AdapterError, StepFailed, adapter_call
from kernel.mrkdwn import code, escape
from kernel.ports.platform import AuditEntry
from kernel.ports.systems import Cluster, RoleBindingSpec

MANAGED = {"app.kubernetes.io/managed-by": "platform-bot"}
GRANT_LABEL = "platform.example.com/access-grant"
EXPIRES = "platform.example.com/expires-at"


def binding_name(grant_id: str) -> str:
    return f"platform-access-{grant_id[:12]}"


def spec_of(grant: Grant) -> RoleBindingSpec:
    return RoleBindingSpec(
        name=grant.binding,
        namespace=grant.namespace,
        cluster_role=grant.cluster_role,
        subject_kind="User" if grant.subject_kind == "User" else "Group",
        subject_name=grant.subject_name,
        labels={**MANAGED, GRANT_LABEL: grant.id},
        annotations={
            EXPIRES: grant.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "platform.example.com/granted-to": grant.user,
        },
    )


class _AccessExecutor:
    def __init__(self, ports: Ports, desk: AccessDesk) -> None:
        self.ports, self.desk = ports, desk

    def cluster(self, env: str) -> Cluster:
        clusters = self.ports.adapters.require("kubernetes")
        return clusters.cluster(self.ports.catalog.environment(env).cluster)

    async def announce(self, grant: Grant, text: str, *, key: str) -> None:
        await self.ports.messenger.post(
            self.ports.catalog.channel_of_service(grant.service), text=text, key=key
        )


class GrantExecutor(_AccessExecutor):
    action_type: ClassVar[type[Action]] = GrantAccess

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, GrantAccess)

        async def schedule_end(context: StepContext) -> dict[str, Any]:
            def save(session: Session) -> Grant:
                row = session.get(AccessGrantRow, context.run_id)
                if row is None:
                    now = self.desk.clock.now()
                    row = AccessGrantRow(
                        id=context.run_id,
                        user=action.user,
                        service=action.service,
                        environment=action.env,
                        team=action.team,
                        role=action.role,
                        cluster_role=action.cluster_role,
                        subject_kind=action.subject_kind,
                        subject_name=action.subject_name,
                        namespace=action.namespace,
                        binding=binding_name(context.run_id),
                        reason=action.reason,
                        state="granting",
                        generation=0,
                        granted_at=now,
                        expires_at=now + timedelta(minutes=action.minutes),
                    )
                    session.add(row)
                    session.flush()
                    self.desk.schedule_end(session, row)
                return grant_of(row)

            grant = await self.desk.db.run(save)
            return {"expires_at": grant.expires_at.isoformat()}

        async def bind(context: StepContext) -> dict[str, Any]:
            grant = await self.desk.grant(context.run_id)
            assert grant is not None
            if grant.state not in ("granting", "active"):
                raise StepFailed("this grant ended before its RoleBinding was made")
            changed = await adapter_call(
                self.cluster(action.env).ensure_role_binding(spec_of(grant))
            )

            def activate(session: Session) -> bool:
                done = session.execute(
                    update(AccessGrantRow)
                    .where(AccessGrantRow.id == grant.id, AccessGrantRow.state == "granting")
                    .values(state="active")
                )
                if not getattr(done, "rowcount", 0):
                    return False
                record_in(
                    session,
                    AuditEntry.of(
                        context.requested_by,
                        "access.granted",
                        action=action,
                        run_id=context.run_id,
                        detail={
                            "grant": grant.id,
                            "until": grant.expires_at.isoformat(),
                            "binding": grant.binding,
                            "reason": action.reason,
                        },
                    ),
                )
                return True

            if not await self.desk.db.run(activate):
                now = await self.desk.grant(grant.id)
                if now is None or now.state in ("revoking", "revoked"):
                    # revoked while we were binding: take back what we just made
                    await adapter_call(
                        self.cluster(action.env).delete_role_binding(grant.namespace, grant.binding)
                    )
                    raise StepFailed("this grant was revoked while it was being made")
            await self.announce(
                grant,
                f":key: <@{grant.user}> has *{grant.role}* access to {grant.where} until "
                f"{grant.expires_at:%H:%M} UTC ({duration_text(action.minutes)}; grant "
                f"{code(grant.short_id)}). Reason: {escape(grant.reason)}",
                key=f"access-granted:{grant.id}",
            )
            return {"binding": grant.binding, "changed": changed}

        return [
            Step(
                "schedule",
                f"Schedule the end (after {duration_text(action.minutes)})",
                schedule_end,
            ),
            Step(
                "bind",
                f"Bind {action.subject_name} to {action.cluster_role} in {action.namespace}",
                bind,
            ),
        ]


class ExtendExecutor(_AccessExecutor):
    action_type: ClassVar[type[Action]] = ExtendAccess

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, ExtendAccess)

        async def extend(context: StepContext) -> dict[str, Any]:
            def push(session: Session) -> Grant | None:
                row = session.get(AccessGrantRow, action.grant_id)
                if row is None:
                    return None
                if row.generation == action.from_generation + 1:  # a re-run: done already
                    return grant_of(row)
                limit = self.desk.clock.now() + timedelta(
                    hours=self.ports.catalog.model.access.max_hours
                )
                until = min(row.expires_at + timedelta(minutes=action.minutes), limit)
                done = session.execute(
                    update(AccessGrantRow)
                    .where(
                        AccessGrantRow.id == action.grant_id,
                        AccessGrantRow.state == "active",
                        AccessGrantRow.generation == action.from_generation,
                    )
                    .values(expires_at=until, generation=action.from_generation + 1)
                )
                if not getattr(done, "rowcount", 0):
                    return None
                cancel(session, timer_keys(row.id, action.from_generation))
                session.refresh(row)
                self.desk.schedule_end(session, row)
                record_in(
                    session,
                    AuditEntry.of(
                        context.requested_by,
                        "access.extended",
                        action=action,
                        run_id=context.run_id,
                        detail={"grant": row.id, "until": until.isoformat()},
                    ),
                )
                return grant_of(row)

            grant = await self.desk.db.run(push)
            if grant is None:
                raise StepFailed(
                    "this access ended or changed since Extend was asked; ask for new access"
                )
            await adapter_call(self.cluster(action.env).ensure_role_binding(spec_of(grant)))
            await self.announce(
                grant,
                f":hourglass_flowing_sand: <@{grant.user}>'s *{grant.role}* access to "
                f"{grant.where} now lasts until {grant.expires_at:%H:%M} UTC "
                f"(grant {code(grant.short_id)}, extended by <@{context.requested_by}>).",
                key=f"access-extended:{grant.id}:{grant.generation}",
            )
            return {"until": grant.expires_at.isoformat()}

        return [Step("extend", f"Extend by {duration_text(action.minutes)}", extend)]


class RevokeExecutor(_AccessExecutor):
    action_type: ClassVar[type[Action]] = RevokeAccess

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, RevokeAccess)

        async def claim(context: StepContext) -> dict[str, Any]:
            outcome = await self.desk.db.run(lambda s: self.desk.claim_revocation(s, action))
            return {"outcome": outcome}

        async def unbind(context: StepContext) -> dict[str, Any]:
            if context.outputs.get("claim", {}).get("outcome") != "claimed":
                return {"skipped": context.outputs.get("claim", {}).get("outcome")}
            grant = await self.desk.grant(action.grant_id)
            assert grant is not None
            try:
                existed = await self.cluster(action.env).delete_role_binding(
                    grant.namespace, grant.binding
                )
            except AdapterError as exc:
                when = await self.desk.db.run(lambda s: self.desk.retry_revocation(s, action))
                raise StepFailed(f"{exc.message}; trying again at {when:%H:%M} UTC") from None
            ended = await self.desk.db.run(lambda s: self.desk.finish_revocation(s, action))
            if ended is not None:
                how = (
                    "ended (its time was up)"
                    if action.why == "expired"
                    else f"was revoked by <@{action.by}>"
                )
                await self.announce(
                    ended,
                    f":lock: <@{ended.user}>'s *{ended.role}* access to {ended.where} {how} "
                    f"(grant {code(ended.short_id)}).",
                    key=f"access-revoked:{ended.id}",
                )
            return {"binding_deleted": existed}

        return [
            Step("claim", "Check the grant is due", claim),
            Step("unbind", f"Delete the RoleBinding of {action.user}", unbind),
        ]


def executors_for(desk: AccessDesk) -> Any:
    def build(ports: Ports) -> list[Executor]:
        return [
            GrantExecutor(ports, desk),
            ExtendExecutor(ports, desk),
            RevokeExecutor(ports, desk),
        ]

    return build
