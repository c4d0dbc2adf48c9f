"""The access desk: who is who in the clusters, the grants table, and the timers that
end grants and warn before they do.

Two timer kinds, registered with `registry.timer`:

- `access.revoke` at a grant's end: submits a `RevokeAccess` Run (idempotency key from
  the timer, so a timer fired twice makes one Run); the Run deletes the RoleBinding and
  moves the grant to revoked with one conditional UPDATE, so the revocation and its
  announcement happen once. A failed deletion schedules another `access.revoke` a few
  minutes later, until the cluster answers.
- `access.warn` before the end (`access.warn_before_minutes`): a direct message to the
  grantee with **Extend** (keyed, so a repeated timer updates the same message).

An extension bumps the grant's `generation` and cancels the old generation's timers;
a timer of an older generation that fires anyway finds nothing to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from catalog import Catalog
from engine.audit import record_in
from engine.db import Database
from engine.timers import Clock, Timer, cancel, schedule
from features.access.actions import RevokeAccess, duration_text
from features.access.tables import AccessGrantRow
from features.kit.context import Ports
from kernel.blocks import actions, button, section
from kernel.ids import SlackUserId
from kernel.mrkdwn import code, escape
from kernel.ports.platform import AuditEntry

REVOKE = "access.revoke"
WARN = "access.warn"
EXTEND_BUTTON = "access.extend"
LIVE_STATES = ("granting", "active")
BOT = SlackUserId("platform-bot")
"""The actor of what timers do (revocations at the end of a grant)."""


@dataclass(frozen=True)
class Grant:
    """A grant as people see it."""

    id: str
    user: str
    service: str
    env: str
    team: str
    role: str
    cluster_role: str
    subject_kind: str
    subject_name: str
    namespace: str
    binding: str
    reason: str
    state: str
    generation: int
    granted_at: datetime
    expires_at: datetime

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def where(self) -> str:
        return f"`{escape(self.service)}` in `{escape(self.env)}`"

    def line(self, now: datetime) -> str:
        left = max(math.ceil((self.expires_at - now).total_seconds() / 60), 0)
        return (
            f"{code(self.short_id)} <@{self.user}> *{self.role}* on {self.where} until "
            f"{self.expires_at:%H:%M} UTC (in {duration_text(left) if left else 'under 1m'})"
            f" · {escape(self.reason[:80])}"
        )

    def revoke_action(self, *, why: str, by: str, attempt: int = 0) -> RevokeAccess:
        return RevokeAccess(
            service=self.service,
            env=self.env,
            team=self.team,
            user=self.user,
            role=self.role,
            grant_id=self.id,
            why=why,
            by=by,
            attempt=attempt,
        )


def timer_keys(grant_id: str, generation: int) -> tuple[str, str]:
    """(revoke, warn) timer keys of one generation of a grant."""
    return f"{REVOKE}:{grant_id}:{generation}", f"{WARN}:{grant_id}:{generation}"


class AccessDesk:
    """Grants and their timers; one per bot."""

    def __init__(self, ports: Ports, db: Database, *, clock: Clock) -> None:
        self.ports, self.db, self.clock = ports, db, clock

    @property
    def catalog(self) -> Catalog:
        return self.ports.catalog

    async def identity_of(self, user: SlackUserId) -> tuple[str, str] | None:
        """(`User` or `Group`, name) of someone in the clusters, from platform.yml."""
        identities = self.catalog.model.access.identities
        found = identities.get(user)
        if found is None:
            email = await self.ports.directory.email_of(user)
            lowered = {k.lower(): v for k, v in identities.items()}
            found = lowered.get(email.lower()) if email else None
        if found is None:
            return None
        return ("User", found.user) if found.user else ("Group", str(found.group))

    # -- reading -------------------------------------------------------------------

    async def live(self, *, service: str | None = None) -> list[Grant]:
        def read(session: Session) -> list[Grant]:
            statement = select(AccessGrantRow).where(AccessGrantRow.state.in_(LIVE_STATES))
            if service is not None:
                statement = statement.where(AccessGrantRow.service == service)
            rows = session.execute(statement.order_by(AccessGrantRow.expires_at)).scalars()
            return [grant_of(row) for row in rows]

        return await self.db.run(read)

    async def grant(self, grant_id: str) -> Grant | None:
        row = await self.db.run(lambda s: s.get(AccessGrantRow, grant_id))
        return grant_of(row) if row is not None else None

    # -- timers --------------------------------------------------------------------

    def schedule_end(self, session: Session, grant: AccessGrantRow) -> None:
        """In the grant's transaction: its revocation at its end, and a warning before."""
        revoke_key, warn_key = timer_keys(grant.id, grant.generation)
        payload = {"grant": grant.id, "generation": grant.generation}
        schedule(session, kind=REVOKE, key=revoke_key, due_at=grant.expires_at, payload=payload)
        warn_at = grant.expires_at - timedelta(
            minutes=self.catalog.model.access.warn_before_minutes
        )
        if warn_at > self.clock.now():
            schedule(session, kind=WARN, key=warn_key, due_at=warn_at, payload=payload)

    async def on_revoke_due(self, timer: Timer) -> None:
        """A grant's end (or a retry of its revocation): one RevokeAccess Run."""
        grant = await self.grant(str(timer.payload.get("grant")))
        if grant is None or grant.state == "revoked":
            return
        await self.ports.runs.submit(
            grant.revoke_action(
                why="expired", by=BOT, attempt=int(timer.payload.get("attempt", 0))
            ),
            requested_by=BOT,
            idempotency_key=timer.idempotency_key,
        )

    async def on_warn_due(self, timer: Timer) -> None:
        """Before the end: tell the grantee, with Extend."""
        grant = await self.grant(str(timer.payload.get("grant")))
        if grant is None or grant.state != "active":
            return
        if grant.generation != timer.payload.get("generation"):
            return
        left = max(math.ceil((grant.expires_at - self.clock.now()).total_seconds() / 60), 1)
        text = (
            f":hourglass: Your *{grant.role}* access to {grant.where} ends at "
            f"{grant.expires_at:%H:%M} UTC (in {duration_text(left)}). Extend it if you still "
            "need it; extending follows the same approval policy."
        )
        await self.ports.messenger.post(
            grant.user,
            text=text,
            blocks=[
                section(text),
                actions(button(EXTEND_BUTTON, "Extend", value=grant.id, style="primary")),
            ],
            key=f"access-warn:{grant.id}:{grant.generation}",
        )

    # -- state changes (each one conditional UPDATE, in the caller's Run step) ------

    def claim_revocation(self, session: Session, action: RevokeAccess) -> str:
        """Move the grant to revoking if it should end now: `claimed`, `ended` (already),
        or `extended` (its end moved past now)."""
        due = AccessGrantRow.expires_at <= self.clock.now()
        condition = [AccessGrantRow.id == action.grant_id, AccessGrantRow.state.in_(LIVE_STATES)]
        if action.why == "expired":
            condition.append(due)
        claimed = session.execute(update(AccessGrantRow).where(*condition).values(state="revoking"))
        if getattr(claimed, "rowcount", 0):
            return "claimed"
        row = session.get(AccessGrantRow, action.grant_id)
        if row is None or row.state in ("revoking", "revoked"):
            return "ended" if row is None or row.state == "revoked" else "claimed"
        return "extended"

    def finish_revocation(self, session: Session, action: RevokeAccess) -> Grant | None:
        """revoking -> revoked, audited, old timers cancelled; the grant if this call did
        it (None: someone did before)."""
        done = session.execute(
            update(AccessGrantRow)
            .where(AccessGrantRow.id == action.grant_id, AccessGrantRow.state == "revoking")
            .values(state="revoked", revoked_at=self.clock.now(), revoked_by=action.by)
        )
        if not getattr(done, "rowcount", 0):
            return None
        row = session.get_one(AccessGrantRow, action.grant_id)
        cancel(session, timer_keys(row.id, row.generation))
        record_in(
            session,
            AuditEntry.of(
                action.by,
                "access.revoked",
                action=action,
                detail={"grant": row.id, "why": action.why, "binding": row.binding},
            ),
        )
        return grant_of(row)

    def retry_revocation(self, session: Session, action: RevokeAccess) -> datetime:
        """Try the revocation again later (the cluster did not answer); when."""
        attempt = action.attempt + 1
        due = self.clock.now() + timedelta(minutes=min(2**attempt, 30))
        schedule(
            session,
            kind=REVOKE,
            key=f"{REVOKE}:{action.grant_id}:retry:{attempt}",
            due_at=due,
            payload={"grant": action.grant_id, "attempt": attempt},
        )
        return due


def grant_of(row: AccessGrantRow) -> Grant:
    fields: dict[str, Any] = {
        "id": row.id,
        "user": row.user,
        "service": row.service,
        "env": row.environment,
        "team": row.team,
        "role": row.role,
        "cluster_role": row.cluster_role,
        "subject_kind": row.subject_kind,
        "subject_name": row.subject_name,
        "namespace": row.namespace,
        "binding": row.binding,
        "reason": row.reason,
        "state": row.state,
        "generation": row.generation,
        "granted_at": row.granted_at,
        "expires_at": row.expires_at,
    }
    return Grant(**fields)
