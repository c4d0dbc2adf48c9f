"""`/platform history <service> <env>`: the revisions a rollback can go back to.

Kubernetes keeps a Deployment's history in its ReplicaSets (revision, pod template,
change-cause); Argo CD keeps an Application's history of synced git revisions. Our own
change-causes (`deploy 1.4.2 by U01ALICE (run …)`) and the audit log add who asked and
who approved.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters.protocols import Revision
from bot.domain import AuditEntry, Reply, ServiceName, UsageError
from bot.mrkdwn import code, escape, truncate
from commands.base import Arguments, Command, CommandContext
from commands.releases import (
    CHANGE_CAUSE_PATTERN,
    Target,
    cluster_of,
    gitops_of,
    live_application,
    live_deployments,
    lookup_target,
    read_live,
)

SHOWN = 15
"""Revisions listed, newest first."""


class History(Command):
    """Show the revisions of a service in an environment: image, when, why and who.

    `/platform history checkout prod` lists them newest first, the running one marked,
    with the change-cause, and who asked and approved when it went through the bot.
    Roll back to one of them with `/platform rollback checkout prod 7`.
    """

    name = "history"
    usage = "<service> <env>"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        service = args.next("service")
        env = args.next("env")
        args.done()
        try:
            target = lookup_target(ctx, service, env)
            if target.backend == "argocd":
                lines = await _argocd_history(ctx, target)
            else:
                audit = await ctx.audit.recent(service=ServiceName(service), limit=200)
                lines = await _kubernetes_history(ctx, target, audit)
        except UsageError as exc:
            raise UsageError(exc.message, usage=History.full_usage()) from None
        return Reply(text=truncate("\n".join(lines), 3000))


async def _kubernetes_history(
    ctx: CommandContext, target: Target, audit: Sequence[AuditEntry]
) -> list[str]:
    cluster = cluster_of(ctx, target)
    approvers: dict[str, list[str]] = {}
    for entry in audit:
        if entry.event == "run.approved" and entry.run_id:
            approvers.setdefault(entry.run_id, []).append(entry.actor)
    lines = []
    for live in await live_deployments(cluster, target):
        revisions = await read_live(
            f"the revisions of {target.where}",
            cluster.revisions(target.namespace, live.deployment),
        )
        newest = sorted(revisions, key=lambda r: r.number, reverse=True)
        lines.append(
            f"*History of {target.where}* (Deployment `{escape(live.deployment)}`, "
            f"newest first; {len(revisions)} revisions)"
        )
        lines += [_revision_line(r, live.revision, approvers) for r in newest[:SHOWN]]
    return lines


def _revision_line(revision: Revision, current: int, approvers: dict[str, list[str]]) -> str:
    mark = " :arrow_left: *running*" if revision.number == current else ""
    line = f"*{revision.number}*{mark} {', '.join(code(i) for i in revision.images)}"
    line += f" · {_when(revision.created_at)}"
    cause = revision.change_cause or ""
    ours = CHANGE_CAUSE_PATTERN.match(cause)
    if ours:
        line += f" · {escape(ours['verb'])} {escape(ours['what'])} by <@{ours['user']}>"
        approved = approvers.get(ours["run"])
        if approved:
            line += ", approved by " + ", ".join(f"<@{u}>" for u in approved)
    elif cause:
        line += f" · {escape(truncate(cause, 120))}"
    return line


async def _argocd_history(ctx: CommandContext, target: Target) -> list[str]:
    app = await live_application(gitops_of(ctx), target)
    newest = sorted(app.history, key=lambda h: h.id, reverse=True)
    current = next((h.id for h in newest if h.revision == app.revision), None)
    lines = [
        f"*History of {target.where}* (Argo CD `{escape(app.name)}`, newest first; "
        f"auto-sync {'on' if app.auto_sync else 'off'})"
    ]
    for entry in newest[:SHOWN]:
        mark = " :arrow_left: *running*" if entry.id == current else ""
        images = entry.images or (app.images if entry.id == current else ())
        shown = f" {', '.join(code(i) for i in images)}" if images else ""
        lines.append(
            f"*{entry.id}*{mark} git {code(entry.revision)}{shown} · {_when(entry.deployed_at)}"
        )
    if not newest:
        lines.append("No history yet.")
    elif not any(entry.images for entry in newest):
        lines.append("_Argo CD keeps git revisions, not images, in its history._")
    return lines


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC" if at is not None else "time unknown"
