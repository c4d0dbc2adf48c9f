"""Where an alert group's thread goes, and what its parent message and replies say.

Pure functions: `features.alerts` reads the group from the database, calls these, and
enqueues the result. Every label and annotation is escaped before it reaches mrkdwn,
so an alert cannot ping `<!channel>`, mention anyone or disguise a link.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from catalog import Catalog
from kernel.blocks import ButtonElement, actions, button, message_text, section
from kernel.blocks import context as context_block
from kernel.mrkdwn import escape, truncate

MAX_REPLY_LINES = 20
"""A reply lists this many changed alerts, then says how many more."""
SUMMARY_LIMIT = 300
HEADLINE_LABELS = ("alertname", "severity", "service", "env")
ICONS = {"firing": ":red_circle:", "resolved": ":large_green_circle:"}


@dataclass(frozen=True)
class Route:
    """The channel of a group's thread, whose it is, and why if it went to the fallback."""

    channel: str
    service: str | None
    team: str | None
    note: str | None = None


class NoChannel(LookupError):
    """Neither an owner's channel nor `platform.fallback_channel` applies."""


def route(catalog: Catalog, labels: dict[str, str]) -> Route:
    """`service` label -> its channel; else `team` label -> the team's; else the fallback."""
    model = catalog.model
    fallback = model.platform.fallback_channel
    service, team = labels.get("service"), labels.get("team")
    note = None
    if service is not None and service in model.services:
        owner = model.services[service].owner
        return Route(catalog.channel_of_service(service), service, owner)
    if service is not None:
        note = f"Service {code(service)} is not in the catalog, so this alert came here."
    elif team is not None and team in model.teams:
        return Route(model.teams[team].slack_channel, None, team)
    elif team is not None:
        note = f"Team {code(team)} is not in the catalog, so this alert came here."
    if fallback is None:
        raise NoChannel(
            "no `service` or `team` label matches the catalog, and platform.yml "
            "has no platform.fallback_channel"
        )
    return Route(fallback, None, None, note)


@dataclass(frozen=True)
class AlertLine:
    """One alert as a reply tells it."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None


@dataclass(frozen=True)
class ParentView:
    """Everything the parent message shows."""

    group_id: str
    status: str
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    firing: int
    resolved: int
    since: datetime | None
    resolved_at: datetime | None
    note: str | None = None
    grafana_url: str | None = None
    runbook_url: str | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    silenced_by: str | None = None
    silenced_until: datetime | None = None
    can_query: bool = False
    can_rollback: bool = False


def render_parent(view: ParentView) -> tuple[str, list[dict[str, Any]]]:
    """The parent message: (notification text, blocks)."""
    labels = view.common_labels
    name = labels.get("alertname", "alert")
    where = " · ".join(f"{key} {code(labels[key])}" for key in HEADLINE_LABELS[1:] if key in labels)
    word = "RESOLVED" if view.status == "resolved" else f"FIRING:{view.firing}"
    headline = f"{ICONS.get(view.status, '')} *[{word}] {escape(name)}*"
    text = f"[{word}] {escape(name)}"
    lines = [headline + (f"  {where}" if where else "")]
    summary = view.common_annotations.get("summary") or view.common_annotations.get("description")
    if summary:
        lines.append(truncate(escape(summary), SUMMARY_LIMIT))
    facts = [f"*Firing:* {view.firing}", f"*Resolved:* {view.resolved}"]
    if view.since is not None:
        facts.append(f"*Since:* {when(view.since)}")
    if view.status == "resolved":
        at = f" at {when(view.resolved_at)}" if view.resolved_at else ""
        facts.append(f":white_check_mark: *All resolved*{at}")
    if view.silenced_until:
        by = f" by <@{view.silenced_by}>" if view.silenced_by else ""
        facts.append(f":mute: *Silenced until* {when(view.silenced_until)}{by}")
    blocks: list[dict[str, Any]] = [section("\n".join(lines)), section("  ·  ".join(facts))]
    links = [
        link
        for link in (link_to(view.grafana_url, "Grafana"), link_to(view.runbook_url, "Runbook"))
        if link
    ]
    context = [*links, *([view.note] if view.note else [])]
    if context:
        blocks.append(context_block(" · ".join(context)))
    if view.acked_by:  # instead of the Ack button: who is on it
        at = f" at {when(view.acked_at)}" if view.acked_at else ""
        blocks.append(context_block(f":eyes: *Acked by* <@{view.acked_by}>{at}"))
    blocks.append(actions(*_buttons(view)))
    return message_text(text), blocks


def _buttons(view: ParentView) -> list[ButtonElement]:
    value = view.group_id
    buttons = [] if view.acked_by else [button("alert.ack", "Ack", value=value)]
    if view.silenced_until:
        buttons.append(button("alert.unsilence", "Unsilence", value=value))
    else:
        buttons.append(button("alert.silence", "Silence…", value=value))
    if view.can_query:
        buttons.append(button("alert.query", "Show query", value=value))
    if view.can_rollback and view.status == "firing":
        buttons.append(button("alert.rollback", "Rollback", value=value, style="danger"))
    return buttons


def render_reply(
    changes: Sequence[AlertLine],
    *,
    common_labels: dict[str, str],
    common_summary: str | None,
    all_resolved: bool,
) -> str:
    """One thread reply for the changes not yet told, coalesced; the last says all resolved."""
    lines = []
    for alert in changes[:MAX_REPLY_LINES]:
        own = {k: v for k, v in sorted(alert.labels.items()) if common_labels.get(k) != v}
        if not own:  # a group of one: name it by what the parent's headline does not show
            own = {k: v for k, v in sorted(alert.labels.items()) if k not in HEADLINE_LABELS}
        name = ", ".join(f"{k}={v}" for k, v in own.items()) or alert.labels.get("alertname", "")
        if alert.status == "resolved":
            at = when(alert.ends_at) if alert.ends_at else "now"
            lines.append(f"{ICONS['resolved']} Resolved {code(name)} at {at}")
        else:
            lines.append(f"{ICONS['firing']} Firing {code(name)} since {when(alert.starts_at)}")
        summary = alert.annotations.get("summary")
        if summary and summary != common_summary:
            lines[-1] += f": {truncate(escape(summary), 150)}"
    if len(changes) > MAX_REPLY_LINES:
        lines.append(f"…and {len(changes) - MAX_REPLY_LINES} more.")
    if all_resolved:
        lines.append(":white_check_mark: *All alerts in this group are resolved.*")
    return "\n".join(lines)


def code(text: str) -> str:
    """Label text as inline code: escaped, backticks neutralised, newlines flattened."""
    flat = " ".join(text.split())
    return "`" + truncate(escape(flat).replace("`", "'"), 120) + "`"


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "unknown"


def link_to(url: str | None, label: str) -> str | None:
    """A mrkdwn link to an http(s) URL; None for anything that could break out of `<…|…>`."""
    if not url or not url.startswith(("https://", "http://")):
        return None
    if any(ch in url for ch in "|<> \t\n\r"):
        return None
    return f"<{url.replace('&', '&amp;')}|{label}>"
