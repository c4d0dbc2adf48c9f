"""Watching a release after its rollout, and saying how it went in its thread.

1. `rollout_finished` (called by releases' last step, through `RolloutVerifier`)
   records the release (`verifications`, state `watching`) and schedules a durable timer
   (engine.timers) for when the window is over: `window_seconds` from the environment's
   `verification` policy (default 10 minutes). The same Run schedules nothing twice.
2. The timer's handler (`check`) asks Prometheus ONE range query per health query,
   covering the window before the rollout and the window after it (so a deploy costs
   one query per health query, far under the limit of one per query per 15 s per deploy;
   `QueryBudget` enforces that limit even when a handler is retried), judges it
   (verdict.py), and posts the verdict in the deploy's thread: healthy, or degraded with
   the numbers, the Grafana link over the same range and a Roll back button (the normal
   flow, approvals included). Where the environment says `auto_rollback: true`, the bot
   rolls back by itself and the audit log records its decision with the evidence.

Every effect of the handler is idempotent (the message is keyed, the rollback Run has an
idempotency key, the row's verdict is a conditional UPDATE), so a retried timer repeats
nothing. Prometheus times are real (wall clock): the data is; the timer's due time comes
from the bot's clock (the sandbox's `/advance` fires it early, and then the window after
is cut short at now, which the verdict says).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from engine.db import Database, RunRow, utcnow
from engine.timers import Clock, Timer, schedule
from features.kit.context import Ports
from features.verification.chart import Chart, Panel, describe, render, warm_up
from features.verification.messages import verdict_message
from features.verification.queries import health_queries, promql
from features.verification.tables import VerificationRow
from features.verification.verdict import Observed, QueryResult, State, Window, judge
from kernel.errors import AdapterError, UsageError
from kernel.ids import EnvironmentName, RunId, ServiceName, SlackChannelId, SlackUserId
from kernel.ports.files import FileUploads
from kernel.ports.platform import AuditEntry, Releases
from kernel.ports.systems import Series
from kernel.ports.verification import FinishedRollout

log = logging.getLogger(__name__)

TIMER_KIND = "verification.check"
BOT = SlackUserId("platform-bot")
QUERY_INTERVAL_SECONDS = 15.0
"""At most one Prometheus query per health query per this many seconds per deploy."""
SETTLE_SECONDS = 5
"""Waited after the window so its last scrape (and rule evaluation) is in."""
POINTS = 120
"""About how many points a range query asks for (its step follows)."""


class TooSoon(Exception):
    """The query budget says wait; the timer tries again later."""


class QueryBudget:
    """One query per (deploy, health query) per `interval` seconds, in this process."""

    def __init__(
        self,
        interval: float = QUERY_INTERVAL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval, self.monotonic = interval, monotonic
        self.last: dict[tuple[str, str], float] = {}
        self.spent = 0

    def take(self, deploy: str, query: str) -> bool:
        now = self.monotonic()
        before = self.last.get((deploy, query))
        if before is not None and now - before < self.interval:
            return False
        self.last[(deploy, query)] = now
        self.spent += 1
        return True


def step_seconds(window_seconds: int) -> float:
    """The range query's resolution: about POINTS points over both windows, 1 s at least."""
    return float(max(1, round(2 * window_seconds / POINTS)))


class VerificationDesk:
    """`RolloutVerifier` for releases, and the handler of the verification timer."""

    def __init__(
        self,
        ports: Ports,
        db: Database,
        *,
        clock: Clock,
        releases: Releases,
        wall: Callable[[], datetime] = utcnow,
        budget: QueryBudget | None = None,
        files: FileUploads | None = None,
    ) -> None:
        self.ports, self.db, self.clock, self.releases = ports, db, clock, releases
        self.wall = wall
        self.budget = budget or QueryBudget()
        self.files = files

    # -- 1. a rollout finished ------------------------------------------------------------

    async def rollout_finished(self, rollout: FinishedRollout) -> str | None:
        policy = self.ports.catalog.environment(rollout.env).verification
        if not policy.enabled:
            return None
        if self.ports.adapters.prometheus is None:
            return "not verified: Prometheus is not configured (PROMETHEUS_URL)"
        due = self.clock.now() + timedelta(seconds=policy.window_seconds + SETTLE_SECONDS)
        service_channel = self.ports.catalog.channel_of_service(rollout.service)

        def record(session: Session) -> None:
            if session.get(VerificationRow, rollout.run_id) is None:
                channel, thread = thread_of(session.get(RunRow, rollout.run_id), service_channel)
                session.add(
                    VerificationRow(
                        run_id=rollout.run_id,
                        kind=rollout.kind,
                        service=rollout.service,
                        environment=rollout.env,
                        version=rollout.version,
                        requested_by=rollout.requested_by,
                        started_at=rollout.started_at,
                        finished_at=rollout.finished_at,
                        window_seconds=policy.window_seconds,
                        channel=channel,
                        thread_key=thread,
                        state="watching",
                    )
                )
            schedule(
                session,
                kind=TIMER_KIND,
                key=f"verify:{rollout.run_id}",
                due_at=due,
                payload={"run_id": rollout.run_id},
            )

        await self.db.run(record)
        if self.files is not None:  # the chart's imports, off the loop, while we wait
            asyncio.get_running_loop().run_in_executor(None, warm_up)
        return f"verifying for {minutes(policy.window_seconds)} against the same time before"

    # -- 2. the window is over ------------------------------------------------------------

    async def on_timer(self, timer: Timer) -> None:
        await self.check(str(timer.payload["run_id"]))

    async def check(self, run_id: str) -> State | None:
        """Judge the release `run_id`, say so in its thread, roll back if policy says."""
        row = await self.db.run(lambda s: s.get(VerificationRow, run_id))
        if row is None or row.state != "watching":
            return None
        observed = await self.observe(row)
        state = observed.state
        policy = self.ports.catalog.environment(row.environment).verification
        automatic = state == "degraded" and policy.auto_rollback and row.kind == "deploy"
        rollback_run: str | None = None
        rollback_error: str | None = None
        if automatic:
            rollback_run, rollback_error = await self.roll_back_by_myself(row, observed)
        text, blocks = verdict_message(
            row,
            observed,
            grafana=self.grafana_link(row, observed),
            offer_rollback=state == "degraded" and row.kind == "deploy" and not automatic,
            rollback_run=rollback_run,
            rollback_error=rollback_error,
        )
        channel = row.channel or self.ports.catalog.channel_of_service(row.service)
        await self.ports.messenger.post(
            channel, text=text, blocks=blocks, key=f"verify:{run_id}", thread_key=row.thread_key
        )
        evidence = evidence_of(observed)
        await self.ports.audit.record(audit_entry(row, f"verification.{state}", run_id, evidence))

        def mark(session: Session) -> None:
            session.execute(
                update(VerificationRow)
                .where(VerificationRow.run_id == run_id, VerificationRow.state == "watching")
                .values(
                    state=state,
                    results=evidence,
                    verdict_at=utcnow(),
                    rollback_run=rollback_run,
                )
            )

        await self.db.run(mark)
        await self.share_chart(row, observed)
        return state

    async def share_chart(self, row: VerificationRow, observed: Observed) -> str | None:
        """The chart in the verdict's thread (not when Prometheus had no data); best
        effort (the verdict stands without it): a failure is logged, and the file id
        returned when it was shared."""
        if self.files is None or observed.state == "unknown":  # no data: nothing to draw
            return None
        try:
            chart = await asyncio.to_thread(release_chart, row, observed)
            return await self.files.upload(
                row.channel or self.ports.catalog.channel_of_service(row.service),
                content=chart.png,
                filename=f"verify-{row.service}-{row.environment}-{row.run_id}.png",
                title=f"{row.service} in {row.environment}: before and after {row.version}",
                alt_text=describe(chart_panels(observed)),
                thread_key=row.thread_key,
            )
        except Exception:
            log.exception("the verification chart was not shared", extra={"run": row.run_id})
            return None

    async def observe(self, row: VerificationRow) -> Observed:
        """One range query per health query over both windows (the budget permitting)."""
        prometheus = self.ports.adapters.require("prometheus")
        window = Window(row.started_at, row.finished_at, row.window_seconds)
        start = datetime.fromtimestamp(window.before_start, UTC)
        end = min(datetime.fromtimestamp(window.after_end, UTC), self.wall())
        namespace = self.ports.catalog.namespace(row.service, row.environment)
        queries = health_queries(self.ports.catalog, row.service)
        results: list[QueryResult] = []
        series: dict[str, list[Series]] = {}
        errors: dict[str, str] = {}
        for query in queries:
            if not self.budget.take(row.run_id, query.name):
                raise TooSoon(f"{query.name} of {row.run_id} was asked less than 15 s ago")
            expr = promql(query, service=row.service, env=row.environment, namespace=namespace)
            try:
                found = await prometheus.query_range(
                    expr, start=start, end=end, step_seconds=step_seconds(row.window_seconds)
                )
            except AdapterError as exc:
                errors[query.name] = exc.message
                found = []
            series[query.name] = found
            results.append(judge(query, found, window))
        return Observed(results=results, series=series, errors=errors, start=start, end=end)

    async def roll_back_by_myself(
        self, row: VerificationRow, observed: Observed
    ) -> tuple[str | None, str | None]:
        """The environment's `auto_rollback`: the Run's id, or why there is none."""
        worse = [r for r in observed.results if r.state == "degraded"]
        reason = "verification found " + ", ".join(r.name for r in worse) + " degraded"
        channel = row.channel if row.channel and not row.channel.startswith("#") else None
        try:
            run = await self.releases.auto_rollback(
                service=row.service,
                env=row.environment,
                reason=reason,
                idempotency_key=f"verify-rollback:{row.run_id}",
                reply_channel=SlackChannelId(channel) if channel else None,
            )
        except (UsageError, AdapterError) as exc:
            log.warning("automatic rollback not possible", extra={"run": row.run_id})
            return None, getattr(exc, "message", None) or str(exc)
        decision = {
            "decided_by": "environment policy auto_rollback: true",
            "reason": reason,
            "verified_run": row.run_id,
            **evidence_of(observed),
        }
        await self.ports.audit.record(
            audit_entry(row, "verification.auto_rollback", str(run), decision)
        )
        return str(run), None

    def grafana_link(self, row: VerificationRow, observed: Observed) -> str | None:
        grafana = self.ports.adapters.grafana
        entry = self.ports.catalog.service(row.service)
        uid = entry.grafana_dashboard or self.ports.catalog.model.platform.grafana_default_dashboard
        if grafana is None or uid is None:
            return None
        return grafana.dashboard(
            uid,
            start=observed.start,
            end=observed.end,
            variables={"service": row.service, "env": row.environment},
        )


def chart_panels(observed: Observed) -> list[Panel]:
    """One panel per health query, with its series as Prometheus returned them."""
    return [
        Panel(
            r.name,
            r.unit,
            [(series_label(s.labels), s.points) for s in observed.series.get(r.name, [])],
        )
        for r in observed.results
    ]


def series_label(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")[:60]


def release_chart(row: VerificationRow, observed: Observed) -> Chart:
    """The release's chart: the rollout marked, the window before shaded."""
    before_start = row.started_at - timedelta(seconds=row.window_seconds)
    return render(
        f"{row.service} in {row.environment}: {row.kind} {row.version} ({observed.state})",
        chart_panels(observed),
        origin=row.finished_at,
        marks=[(row.started_at, row.finished_at, f"{row.kind} {row.version}")],
        before=(before_start, row.started_at),
    )


def thread_of(run: RunRow | None, service_channel: str) -> tuple[str, str | None]:
    """Where the release's progress message is: its channel and the thread to reply in."""
    if run is None:
        return service_channel, None
    flags = run.flags or {}
    if run.reply_channel:
        return run.reply_channel, str(flags.get("thread_key") or f"run:{run.id}")
    announce = flags.get("announce_channel")
    if announce:
        return str(announce), f"run:{run.id}:announce"
    return service_channel, None


def audit_entry(
    row: VerificationRow, event: str, run_id: str, detail: dict[str, Any]
) -> AuditEntry:
    """An entry of the bot's own, about the release's service and environment."""
    return AuditEntry(
        at=datetime.now(UTC),
        actor=BOT,
        event=event,
        service=ServiceName(row.service),
        environment=EnvironmentName(row.environment),
        run_id=RunId(run_id),
        detail=detail,
    )


def evidence_of(observed: Observed) -> dict[str, Any]:
    """The numbers behind a verdict, for the row and the audit log."""
    return {
        "verdict": observed.state,
        "range": [observed.start.isoformat(), observed.end.isoformat()],
        "queries": [r.as_dict() for r in observed.results],
        "errors": observed.errors,
    }


def minutes(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"
