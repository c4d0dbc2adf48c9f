"""The buttons on an alert thread's parent: Ack, Silence (with its form), Unsilence, Show
query and Rollback.

A button's value is only the group id; everything else is read from the database at
click time. Who may press them (Rollback aside, which follows `/platform rollback`'s own
rules and approvals): members of the team that owns the alert (its service's owner or
its `team` label), members of the team whose channel holds the thread (so SRE, whose
channel is the fallback, handle alerts nobody owns), and platform admins.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from catalog import membership_of
from features.alerts.groups import AlertGroupInfo, AlertGroups, thread_key
from features.alerts.silences import SilenceLater
from features.alerts.threads import code
from features.kit.context import Button, Context, Form
from kernel.blocks import (
    input_block,
    message_text,
    modal,
    option,
    section,
    static_select,
    text_input,
)
from kernel.errors import AdapterError
from kernel.ids import ServiceName, SlackChannelId
from kernel.interactions import Click, Reply, Submission
from kernel.mrkdwn import escape, truncate
from kernel.ports.platform import Asker, AuditEntry, Releases
from kernel.ports.systems import MetricsQuery

DURATIONS = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(hours=24)}
MAX_SILENCE = timedelta(days=7)
MIN_SILENCE = timedelta(minutes=5)
CUSTOM = re.compile(r"^\s*(\d{1,4})\s*([mhd])\s*$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}
MAX_SAMPLES = 20
GONE = Reply(text="That alert group no longer exists; nothing was done.")


class _AlertHandler:
    """A handler of the alert groups it was registered with."""

    def __init__(self, groups: AlertGroups) -> None:
        self.groups = groups


async def _group_for(groups: AlertGroups, ctx: Context, group_id: str) -> AlertGroupInfo | Reply:
    """The group, if it exists and the clicker may act on it; else the refusal to show."""
    group = await groups.group(group_id)
    if group is None:
        return GONE
    email = await ctx.directory.email_of(ctx.user) if ctx.catalog.lists_emails() else None
    membership = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    teams = {group.team} | {
        name
        for name, team in ctx.catalog.model.teams.items()
        if team.slack_channel == group.channel
    }
    teams.discard(None)
    if membership.platform_admin or teams & set(membership.teams):
        return group
    who = ", ".join(sorted(f"*{escape(str(t))}*" for t in teams)) or "no team"
    return Reply(
        text=f"Only members of {who} or platform admins may act on this alert; nothing was done."
    )


async def _say_in_thread(ctx: Context, group: AlertGroupInfo, text: str) -> None:
    await ctx.ports.messenger.post(
        group.channel, text=message_text(text), thread_key=thread_key(group.id)
    )


async def _audit(ctx: Context, group: AlertGroupInfo, event: str, **detail: Any) -> None:
    await ctx.audit.record(
        AuditEntry(
            at=datetime.now(UTC),
            actor=ctx.user,
            event=event,
            service=ServiceName(group.service) if group.service else None,
            detail={"group": group.id, **detail},
        )
    )


class AckButton(_AlertHandler, Button):
    """Ack: "I am on it". Who and when show on the parent."""

    action_id = "alert.ack"

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        group = await _group_for(self.groups, ctx, click.value)
        if isinstance(group, Reply):
            return group
        await self.groups.acknowledge(group.id, by=ctx.user)
        await _audit(ctx, group, "alert.acked")
        return None


class SilenceButton(_AlertHandler, Button):
    """Silence…: opens the form (duration and comment)."""

    action_id = "alert.silence"

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        group = await _group_for(self.groups, ctx, click.value)
        if isinstance(group, Reply):
            return group
        if click.trigger_id is None:
            return Reply(text="Slack sent no trigger to open the form with; press it again.")
        await ctx.ports.modals.open(click.trigger_id, silence_form(group))
        return None


def silence_form(group: AlertGroupInfo) -> dict[str, Any]:
    """The Silence modal; `private_metadata` carries the group id only."""
    matchers = ", ".join(f"{k}={v}" for k, v in sorted(group.common_labels.items()))
    hours = [option("1 hour", "1h"), option("4 hours", "4h"), option("24 hours", "24h")]
    durations = [*hours, option("Custom…", "custom")]
    return modal(
        SilenceForm.callback_id,
        "Silence alerts",
        [
            section(f"Silences every alert matching {code(matchers)} in Alertmanager."),
            input_block(
                "duration",
                "For how long",
                static_select("duration", durations, initial=hours[0]),
            ),
            input_block(
                "custom",
                "Custom duration",
                text_input("custom", max_length=10),
                optional=True,
                hint="With Custom: e.g. 90m, 2h or 3d.",
            ),
            input_block(
                "comment",
                "Comment",
                text_input("comment", multiline=True, max_length=500),
                optional=True,
            ),
        ],
        submit="Silence",
        private_metadata=group.id,
    )


def parse_duration(choice: str | None, custom: str | None) -> timedelta:
    """1h / 4h / 24h, or a custom `<number><m|h|d>`; ValueError says what to type."""
    if choice in DURATIONS:
        return DURATIONS[choice]
    match = CUSTOM.match(custom or "")
    if choice != "custom" or match is None:
        raise ValueError("Type a duration such as 90m, 2h or 3d.")
    duration = timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    if not MIN_SILENCE <= duration <= MAX_SILENCE:
        raise ValueError("A silence lasts from 5m to 7d.")
    return duration


class SilenceForm(_AlertHandler, Form):
    """Checks the silence asked for and answers Slack at once; `SilenceLater` creates it
    in Alertmanager (the group's common labels as matchers) and says so in the thread."""

    callback_id = "alert.silence"

    def __init__(self, groups: AlertGroups, later: SilenceLater | None = None) -> None:
        super().__init__(groups)
        self.later = later

    async def submit(self, ctx: Context, submission: Submission) -> dict[str, str] | None:
        group = await _group_for(self.groups, ctx, submission.private_metadata)
        if isinstance(group, Reply):
            return {"duration": truncate(group.text, 150)}
        values = submission.values
        try:
            duration = parse_duration(values.get("duration"), values.get("custom"))
        except ValueError as exc:
            return {"custom": str(exc)}
        if ctx.adapters.alertmanager is None or self.later is None:
            return {"duration": "Alertmanager is not configured on this bot (ALERTMANAGER_URL)."}
        email = await ctx.directory.email_of(ctx.user) if ctx.catalog.lists_emails() else None
        author = f"{ctx.user} ({email})" if email else str(ctx.user)
        comment = str(values.get("comment") or "").strip() or f"Silenced from Slack by {author}"
        # Nothing here waits on Alertmanager: the silence is made after Slack has its answer.
        await self.later.ask(
            key=ctx.request_key,
            group_id=group.id,
            user=ctx.user,
            duration=duration,
            author=author,
            comment=comment,
        )
        return None


class UnsilenceButton(_AlertHandler, Button):
    """Unsilence: expires the group's silence in Alertmanager."""

    action_id = "alert.unsilence"

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        group = await _group_for(self.groups, ctx, click.value)
        if isinstance(group, Reply):
            return group
        if group.silence_id is None:
            return Reply(text="This alert group is not silenced; nothing was done.")
        silences = ctx.adapters.alertmanager
        if silences is None:
            return Reply(text="Alertmanager is not configured on this bot (ALERTMANAGER_URL).")
        try:
            await silences.expire_silence(group.silence_id)
        except AdapterError as exc:
            return Reply(text=f"The silence was not expired: {escape(exc.message)}")
        await self.groups.clear_silence(group.id, by=ctx.user)
        await _say_in_thread(ctx, group, f":loud_sound: <@{ctx.user}> lifted the silence.")
        await _audit(ctx, group, "alert.unsilenced", silence=group.silence_id)
        return None


class ShowQueryButton(_AlertHandler, Button):
    """Show query: runs the alert's expression in Prometheus; the values go in the thread."""

    action_id = "alert.query"

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        group = await _group_for(self.groups, ctx, click.value)
        if isinstance(group, Reply):
            return group
        if not group.expressions:
            return Reply(text="These alerts carry no Prometheus expression to run.")
        prometheus = ctx.adapters.prometheus
        if prometheus is None:
            return Reply(text="Prometheus is not configured on this bot (PROMETHEUS_URL).")
        parts = [await _run_query(prometheus, expr) for expr in group.expressions[:3]]
        await _say_in_thread(ctx, group, "\n\n".join(parts))
        return None


async def _run_query(prometheus: MetricsQuery, expr: str) -> str:
    head = f"*Query* {code(expr)}"
    try:
        samples = await prometheus.query(expr)
    except AdapterError as exc:
        return f"{head}\nPrometheus refused it: {truncate(escape(exc.message), 300)}"
    if not samples:
        return f"{head}\nNo series match right now (the condition no longer holds)."
    lines = [
        f"{code(', '.join(f'{k}={v}' for k, v in sorted(s.labels.items())) or '{}')} = {s.value:g}"
        for s in samples[:MAX_SAMPLES]
    ]
    more = f"\n…and {len(samples) - MAX_SAMPLES} more." if len(samples) > MAX_SAMPLES else ""
    return f"{head} ({len(samples)} series)\n" + "\n".join(lines) + more


class RollbackButton(Button):
    """Rollback: the same flow as `/platform rollback <service> <env>`, approvals included,
    for the service and environment the alert names (its `service` and `env` labels)."""

    action_id = "alert.rollback"

    def __init__(self, groups: AlertGroups, releases: Releases) -> None:
        self.groups, self.releases = groups, releases

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        group = await self.groups.group(click.value)
        if group is None:
            return GONE
        env = group.common_labels.get("env")
        if group.service is None or env is None:
            return Reply(
                text="These alerts name no catalog service and `env` label, so I cannot tell "
                "what to roll back. Use `/platform rollback <service> <env>`."
            )
        name = group.common_labels.get("alertname", "an alert")
        # In the thread, in order: who asked, then the approval card and the progress
        # (the thread's channel, as the group names it, keeps them in one outbox lane).
        await _say_in_thread(
            ctx,
            group,
            f":rewind: <@{ctx.user}> asked for a rollback of {code(group.service)} in {code(env)}.",
        )
        asker = Asker(
            user=ctx.user,
            channel=SlackChannelId(group.channel),
            team=ctx.team,
            request_key=ctx.request_key,
        )
        return await self.releases.rollback(
            asker,
            service=group.service,
            env=env,
            reason=f"alert {name} (from its thread)",
            thread_key=thread_key(group.id),
        )
