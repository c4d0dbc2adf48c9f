"""`/platform status <service>`: where a service runs and how it is doing, at a glance.

Per environment: the running image(s), replicas ready/desired (or Argo CD's sync and
health), the last deploy or rollback from the audit log and a Grafana link; then the
alerts firing for the service. One environment that cannot be read is shown as such
and never hides the others. A service being cleaned up shows what is still there instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from catalog import UnknownName
from catalog.model import Service
from features.kit.commands import Arguments, Command, CommandContext
from features.releases.backends import backend_for
from features.releases.targets import Target, lookup_target
from kernel.errors import AdapterError, UsageError
from kernel.ids import ServiceName
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape, truncate
from kernel.ports.platform import AuditEntry

RELEASE_PREFIXES = ("deploy ", "roll back ")
"""How the audit log's `action` of a Deploy or a Rollback starts (their summary())."""


class Status(Command):
    """Show a service's running version, replicas, last deploy and alerts, per environment.

    `/platform status checkout` reads each environment live (Kubernetes or Argo CD), the
    audit log for the last deploy or rollback, and Alertmanager for firing alerts, with
    a Grafana link where one is configured.
    """

    name = "status"
    usage = "<service>"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        service = args.next("service")
        args.done()
        try:
            entry = ctx.catalog.service(service)
        except UnknownName as exc:
            raise UsageError(escape(str(exc)), usage=Status.full_usage()) from None
        lines = [f"*Status of `{escape(service)}`* (owned by *{escape(entry.owner)}*)"]
        if entry.removal is not None:
            return Reply(text=truncate("\n".join([*lines, _being_removed(entry)]), 3000))
        audit = await ctx.audit.recent(service=ServiceName(service), limit=200)
        for env in entry.environments:
            lines.append(await _environment_line(ctx, lookup_target(ctx, service, env), audit))
        lines.append(await _alerts_line(ctx, service))
        return Reply(text=truncate("\n".join(lines), 3000))


def _being_removed(entry: Service) -> str:
    """What is left of a service Clean up is removing (kept in the catalog until it is all
    gone, so its name stays taken)."""
    assert entry.removal is not None
    left = "\n".join(f"• {escape(part)}" for part in entry.removal.remains) or "• its last parts"
    return (
        f":broom: Being removed: Clean up was asked by <@{entry.removal.requested_by}>. "
        f"Still there:\n{left}\nIt stays in the catalog, and its name taken, until all of it "
        "is gone; the Clean up's progress message has Retry for what failed."
    )


async def _environment_line(
    ctx: CommandContext, target: Target, audit: Sequence[AuditEntry]
) -> str:
    head = f"• *{escape(target.env)}*"
    try:
        live = await backend_for(ctx.ports, target.backend).status(target)
    except UsageError as exc:
        live = f":warning: {exc.message}"
    line = f"{head}: {live}"
    link = _grafana(ctx, target)
    if link:
        line += f" · <{escape(link)}|Grafana>"
    last = _last_release(audit, target.env)
    if last is not None:
        line += (
            f"\n    last: {escape(str(last.detail.get('action')))} by <@{last.actor}>, "
            f"{last.at:%Y-%m-%d %H:%M} UTC"
        )
    return line


def _last_release(audit: Sequence[AuditEntry], env: str) -> AuditEntry | None:
    """The newest deploy or rollback of this environment that succeeded."""
    for entry in audit:  # newest first
        action = str(entry.detail.get("action") or "")
        if (
            entry.environment == env
            and entry.event == "run.succeeded"
            and action.startswith(RELEASE_PREFIXES)
        ):
            return entry
    return None


def _grafana(ctx: CommandContext, target: Target) -> str | None:
    grafana = ctx.adapters.grafana
    dashboard = (
        ctx.catalog.service(target.service).grafana_dashboard
        or ctx.catalog.model.platform.grafana_default_dashboard
    )
    if grafana is None or dashboard is None:
        return None
    return grafana.dashboard(dashboard, variables={"service": target.service, "env": target.env})


async def _alerts_line(ctx: CommandContext, service: str) -> str:
    alertmanager = ctx.adapters.alertmanager
    if alertmanager is None:
        return "Alerts: Alertmanager is not configured on this bot."
    try:
        alerts = await alertmanager.alerts(filters=[f'service="{service}"'])
    except AdapterError as exc:
        return f"Alerts: :warning: could not read them: {escape(str(exc))}"
    if not alerts:
        return "Alerts: none firing."
    shown = [_alert(a) for a in alerts[:10]]
    more = f" and {len(alerts) - 10} more" if len(alerts) > 10 else ""
    return f"*Firing alerts* ({len(alerts)}{more}):\n" + "\n".join(shown)


def _alert(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    name = str(labels.get("alertname", "unnamed"))
    details = ", ".join(
        escape(str(labels[k])) for k in ("severity", "env", "environment") if labels.get(k)
    )
    since = str(alert.get("startsAt") or "")[:16].replace("T", " ")
    line = f"• {code(name)}"
    if details:
        line += f" ({details})"
    if since:
        line += f" since {escape(since)} UTC"
    return line
