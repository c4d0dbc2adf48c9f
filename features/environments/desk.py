"""The environments desk: the table's reads, the team limits, and the timers that warn
before an environment ends and tear it down when it does.

Timer kinds, registered with `registry.timer`:

- `env.expire` at an environment's end: submits a `DeleteEnvironment` Run (idempotency
  key from the timer, so a timer fired twice, or by two replicas, makes one Run); the Run
  claims the row with one conditional UPDATE, deletes the namespace and waits until it is
  gone. A teardown that fails (the cluster refuses or does not answer, the namespace stays
  Terminating) keeps the row `deleting` with the error, says so in the environment's
  thread, and schedules another `env.expire` a little later, until it is done.
- `env.warn` before the end (`on_demand.warn_before_hours`, 24 h and 1 h by default): a
  direct message to the creator and a reply in the team channel's thread, each with
  **Extend** and **Delete now**.

An extension bumps `generation` and cancels the older generation's timers; a timer of an
older generation that fires anyway finds nothing to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from catalog import Catalog
from catalog.model import OnDemandSettings
from engine.audit import record_in
from engine.db import Database
from engine.timers import Clock, Timer, cancel, schedule
from features.environments.actions import DeleteEnvironment, hours_text
from features.environments.tables import EnvironmentRow
from features.kit.context import Ports
from kernel.blocks import actions, button, section
from kernel.ids import SlackUserId
from kernel.mrkdwn import code, escape
from kernel.ports.platform import AuditEntry

EXPIRE = "env.expire"
WARN = "env.warn"
EXTEND_BUTTON = "env.extend"
DELETE_BUTTON = "env.delete"
CONFIRM_BUTTON = "env.delete-confirm"
LIVE_STATES = ("creating", "ready", "failed", "deleting")
BOT = SlackUserId("platform-bot")
"""The actor of what timers and webhooks do."""


@dataclass(frozen=True)
class Limits:
    """One team's limits, its own or the platform-wide defaults."""

    default_ttl_hours: int
    max_ttl_hours: int
    max_environments: int
    cpu_budget: float


@dataclass(frozen=True)
class Environment:
    """An environment as people see it."""

    id: str
    name: str
    service: str
    team: str
    template: str
    cluster: str
    namespace: str
    version: str
    image: str
    size: str
    cpu: float
    url: str | None
    creator: str
    channel: str
    preview: dict[str, Any] | None
    state: str
    generation: int
    last_error: str | None
    created_at: datetime
    expires_at: datetime

    @property
    def thread_key(self) -> str:
        return f"env:{self.id}"

    @property
    def where(self) -> str:
        return f"environment {code(self.name)} (`{escape(self.service)}`)"

    def left(self, now: datetime) -> str:
        hours = (self.expires_at - now).total_seconds() / 3600
        if hours <= 0:
            return "ending now"
        if hours < 1:
            return f"{max(math.ceil(hours * 60), 1)}m left"
        return f"{hours_text(hours)} left"

    def line(self, now: datetime) -> str:
        age = hours_text((now - self.created_at).total_seconds() / 3600) or "0h"
        state = "" if self.state == "ready" else f" · *{self.state}*"
        error = f" · last error: {escape(self.last_error[:120])}" if self.last_error else ""
        return (
            f"{code(self.name)} `{escape(self.service)}` {code(self.version)} · "
            f"<@{self.creator}> · age {age} · {self.left(now)} · weight {self.cpu:g} CPU"
            f"{state}{error}"
        )

    def delete_action(self, *, why: str, by: str, attempt: int = 0) -> DeleteEnvironment:
        return DeleteEnvironment(
            env_id=self.id,
            name=self.name,
            service=self.service,
            team=self.team,
            env=self.template,
            why=why,
            by=by,
            attempt=attempt,
        )


def timer_keys(env_id: str, generation: int, settings: OnDemandSettings) -> list[str]:
    """Every timer key of one generation: the end, then each warning."""
    return [f"{EXPIRE}:{env_id}:{generation}"] + [
        f"{WARN}:{env_id}:{generation}:{h:g}" for h in settings.warn_before_hours
    ]


class EnvironmentDesk:
    """Environments and their timers; one per bot."""

    def __init__(self, ports: Ports, db: Database, *, clock: Clock) -> None:
        self.ports, self.db, self.clock = ports, db, clock

    @property
    def catalog(self) -> Catalog:
        return self.ports.catalog

    @property
    def settings(self) -> OnDemandSettings:
        return self.catalog.model.on_demand

    def limits(self, team: str) -> Limits:
        own = self.settings.teams.get(team)
        s = self.settings

        def pick(name: str) -> Any:
            value = getattr(own, name) if own is not None else None
            return getattr(s, name) if value is None else value

        return Limits(
            default_ttl_hours=pick("default_ttl_hours"),
            max_ttl_hours=pick("max_ttl_hours"),
            max_environments=pick("max_environments"),
            cpu_budget=pick("cpu_budget"),
        )

    # -- reading -------------------------------------------------------------------

    async def live(self, *, team: str | None = None) -> list[Environment]:
        def read(session: Session) -> list[Environment]:
            statement = select(EnvironmentRow).where(EnvironmentRow.state.in_(LIVE_STATES))
            if team is not None:
                statement = statement.where(EnvironmentRow.team == team)
            rows = session.execute(statement.order_by(EnvironmentRow.expires_at)).scalars()
            return [environment_of(row) for row in rows]

        return await self.db.run(read)

    async def get(self, env_id: str) -> Environment | None:
        row = await self.db.run(lambda s: s.get(EnvironmentRow, env_id))
        return environment_of(row) if row is not None else None

    async def named(self, name: str) -> Environment | None:
        """The live environment called `name`."""
        found = [e for e in await self.live() if e.name == name]
        return found[0] if found else None

    async def preview_of(self, project_id: int, iid: int) -> Environment | None:
        for env in await self.live():
            preview = env.preview or {}
            if preview.get("project_id") == project_id and preview.get("iid") == iid:
                return env
        return None

    # -- timers --------------------------------------------------------------------

    def schedule_lifetime(self, session: Session, row: EnvironmentRow) -> None:
        """In the row's transaction: its end, and each warning still ahead."""
        expire_key, *warn_keys = timer_keys(row.id, row.generation, self.settings)
        payload = {"env": row.id, "generation": row.generation}
        schedule(session, kind=EXPIRE, key=expire_key, due_at=row.expires_at, payload=payload)
        now = self.clock.now()
        for key, hours in zip(warn_keys, self.settings.warn_before_hours, strict=True):
            warn_at = row.expires_at - timedelta(hours=hours)
            if warn_at > now:
                schedule(
                    session, kind=WARN, key=key, due_at=warn_at, payload={**payload, "hours": hours}
                )

    async def on_expire_due(self, timer: Timer) -> None:
        """An environment's end (or a retry of its teardown): one DeleteEnvironment Run."""
        env = await self.get(str(timer.payload.get("env")))
        if env is None or env.state == "deleted":
            return
        attempt = int(timer.payload.get("attempt", 0))
        if not attempt and env.generation != timer.payload.get("generation"):
            return  # extended since: the newer generation's timer ends it
        await self.ports.runs.submit(
            env.delete_action(why="expired", by=BOT, attempt=attempt),
            requested_by=BOT,
            idempotency_key=timer.idempotency_key,
        )

    async def on_warn_due(self, timer: Timer) -> None:
        """Before the end: tell the creator and the team, with Extend and Delete now."""
        env = await self.get(str(timer.payload.get("env")))
        if env is None or env.state not in ("ready", "failed"):
            return
        if env.generation != timer.payload.get("generation"):
            return
        left = (env.expires_at - self.clock.now()).total_seconds() / 3600
        hours = float(timer.payload.get("hours", 0))
        closer = [h for h in self.settings.warn_before_hours if h < hours]
        if left <= 0 or (closer and left <= max(closer)):
            return  # fired late (time jumped): the end, or a closer warning, is due too
        text = (
            f":hourglass: {env.where} is deleted at {env.expires_at:%Y-%m-%d %H:%M} UTC "
            f"({env.left(self.clock.now())}). Extend it if it is still needed."
        )
        blocks = [section(text), self.buttons(env)]
        key = f"env-warn:{env.id}:{env.generation}:{timer.payload.get('hours')}"
        if env.creator != BOT:
            await self.ports.messenger.post(env.creator, text=text, blocks=blocks, key=f"{key}:dm")
        await self.ports.messenger.post(
            env.channel, text=text, blocks=blocks, key=key, thread_key=env.thread_key
        )

    @staticmethod
    def buttons(env: Environment) -> dict[str, Any]:
        return actions(
            button(EXTEND_BUTTON, "Extend", value=env.id, style="primary"),
            button(DELETE_BUTTON, "Delete now", value=env.id, style="danger"),
        )

    # -- state changes (each one conditional UPDATE, in the caller's Run step) ------

    def claim_teardown(self, session: Session, action: DeleteEnvironment) -> str:
        """Move the environment to deleting if it should go now: `claimed`, `gone`
        (deleted already) or `extended` (its end moved past now)."""
        condition = [
            EnvironmentRow.id == action.env_id,
            EnvironmentRow.state.in_(("creating", "ready", "failed")),
        ]
        if action.why == "expired":
            condition.append(EnvironmentRow.expires_at <= self.clock.now())
        claimed = session.execute(update(EnvironmentRow).where(*condition).values(state="deleting"))
        if getattr(claimed, "rowcount", 0):
            return "claimed"
        row = session.get(EnvironmentRow, action.env_id)
        if row is None or row.state == "deleted":
            return "gone"
        return "claimed" if row.state == "deleting" else "extended"

    def finish_teardown(self, session: Session, action: DeleteEnvironment) -> Environment | None:
        """deleting -> deleted, audited, timers cancelled; the environment if this call
        did it (None: someone did before)."""
        done = session.execute(
            update(EnvironmentRow)
            .where(EnvironmentRow.id == action.env_id, EnvironmentRow.state == "deleting")
            .values(
                state="deleted", deleted_at=self.clock.now(), deleted_by=action.by, last_error=None
            )
        )
        if not getattr(done, "rowcount", 0):
            return None
        row = session.get_one(EnvironmentRow, action.env_id)
        for generation in range(row.generation + 1):
            cancel(session, timer_keys(row.id, generation, self.settings))
        record_in(
            session,
            AuditEntry.of(
                action.by,
                "env.deleted",
                action=action,
                detail={"environment": row.name, "why": action.why, "namespace": row.namespace},
            ),
        )
        return environment_of(row)

    def retry_teardown(self, session: Session, action: DeleteEnvironment, error: str) -> datetime:
        """Keep the failure on the row (owners see it) and try again later; when."""
        attempt = action.attempt + 1
        due = self.clock.now() + timedelta(minutes=min(2**attempt, 30))
        session.execute(
            update(EnvironmentRow)
            .where(EnvironmentRow.id == action.env_id)
            .values(last_error=error[:500])
        )
        schedule(
            session,
            kind=EXPIRE,
            key=f"{EXPIRE}:{action.env_id}:retry:{attempt}",
            due_at=due,
            payload={"env": action.env_id, "attempt": attempt},
        )
        return due


def environment_of(row: EnvironmentRow) -> Environment:
    return Environment(
        id=row.id,
        name=row.name,
        service=row.service,
        team=row.team,
        template=row.template,
        cluster=row.cluster,
        namespace=row.namespace,
        version=row.version,
        image=row.image,
        size=row.size,
        cpu=row.cpu,
        url=row.url,
        creator=row.creator,
        channel=row.channel,
        preview=dict(row.preview) if row.preview else None,
        state=row.state,
        generation=row.generation,
        last_error=row.last_error,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )
