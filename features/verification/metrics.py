"""`/platform metrics <service> <env> [--since 6h]`: the health queries' chart on demand,
with the deploys and rollbacks of that range marked, shared in the channel it was asked
in. One range query per health query, and at most one per query per 15 s per service
and environment however often it is asked."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import UnknownName
from engine.db import utcnow
from features.kit.commands import Arguments, Command, CommandContext
from features.verification.chart import Panel, describe, render
from features.verification.desk import QueryBudget, VerificationDesk, series_label
from features.verification.queries import health_queries, promql
from features.verification.tables import VerificationRow
from kernel.errors import AdapterError, UsageError
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape

SINCE = re.compile(r"^(\d{1,4})([mhd])$")
UNITS = {"m": 60, "h": 3600, "d": 86400}
LONGEST = timedelta(days=7)
SHORTEST = timedelta(minutes=5)
POINTS = 240


def parse_since(text: str) -> timedelta:
    """`90m`, `6h`, `2d`: between 5 minutes and 7 days."""
    match = SINCE.match(text.strip().lower())
    if match is None:
        raise UsageError(
            f"{code(text[:20])} is not a duration; write it like `30m`, `6h` or `2d`.",
            usage=Metrics.full_usage(),
        )
    span = timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])
    if not SHORTEST <= span <= LONGEST:
        raise UsageError("`--since` is from `5m` to `7d`.", usage=Metrics.full_usage())
    return span


class Metrics(Command):
    """Chart a service's health queries (error ratio, p99, restarts) with deploys marked.

    `/platform metrics checkout prod --since 6h` draws each health query over the last six
    hours (default 1h) with every deploy and rollback of that time marked, and shares
    the PNG in this channel. The queries are the service's own or the golden path's.
    """

    name: ClassVar[str] = "metrics"
    usage: ClassVar[str] = "<service> <env> [--since 1h]"

    def __init__(self, desk: VerificationDesk) -> None:
        self.desk = desk
        self.budget = QueryBudget()

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        service, env = args.next("service"), args.next("env")
        since = parse_since(args.option("since") or "1h")
        args.done()
        try:
            entry = ctx.catalog.service(service)
            ctx.catalog.environment(env)
        except UnknownName as exc:
            raise UsageError(escape(str(exc)), usage=self.full_usage()) from None
        if env not in entry.environments:
            raise UsageError(f"`{escape(service)}` does not run in `{escape(env)}`.")
        prometheus = ctx.adapters.require("prometheus")
        if self.desk.files is None:
            return Reply(text="This bot cannot share files in Slack; nothing was drawn.")
        end = utcnow()
        start = end - since
        step = max(15.0, since.total_seconds() / POINTS)
        namespace = ctx.catalog.namespace(service, env)
        panels: list[Panel] = []
        for query in health_queries(ctx.catalog, service):
            if not self.budget.take(f"metrics:{service}/{env}", query.name):
                return Reply(text="That chart was drawn less than 15 s ago; look just above.")
            expr = promql(query, service=service, env=env, namespace=namespace)
            try:
                found = await prometheus.query_range(expr, start=start, end=end, step_seconds=step)
            except AdapterError as exc:
                return Reply(text=f"Prometheus refused {code(query.name)}: {escape(exc.message)}")
            panels.append(
                Panel(query.name, query.unit, [(series_label(s.labels), s.points) for s in found])
            )
        marks = await self.desk.db.run(lambda s: releases_between(s, service, env, start, end))
        title = f"{service} in {env}: the last {since_text(since)}"
        chart = await asyncio.to_thread(render, title, panels, origin=end, marks=marks)
        try:
            await self.desk.files.upload(
                ctx.channel,
                content=chart.png,
                filename=f"metrics-{service}-{env}.png",
                title=title,
                alt_text=describe(panels),
            )
        except AdapterError as exc:
            return Reply(text=f"The chart was drawn but Slack refused it: {escape(exc.message)}")
        return Reply(
            text=f"Shared the chart of `{escape(service)}` in `{escape(env)}` over the last "
            f"{since_text(since)} ({len(marks)} release(s) marked)."
        )


def releases_between(
    session: Session, service: str, env: str, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, str]]:
    """The verified deploys and rollbacks of `service` in `env` that finished in range."""
    rows = session.execute(
        select(VerificationRow)
        .where(
            VerificationRow.service == service,
            VerificationRow.environment == env,
            VerificationRow.finished_at >= start,
            VerificationRow.finished_at <= end,
        )
        .order_by(VerificationRow.finished_at)
    ).scalars()
    return [(r.started_at, r.finished_at, f"{r.kind} {r.version}"[:40]) for r in rows]


def since_text(since: timedelta) -> str:
    seconds = int(since.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"
