"""`/platform audit [service]`: the recent audit log, for everything or one service (also
one that is no longer in the catalog, such as a cleaned-up new service, if it has entries)."""

from __future__ import annotations

from catalog import UnknownName
from features.kit.commands import Arguments, Command, CommandContext
from kernel.errors import UsageError
from kernel.ids import ServiceName
from kernel.interactions import Reply
from kernel.mrkdwn import escape, truncate

LIMIT = 20


class Audit(Command):
    """Show who changed what recently, for everything or for one service.

    Every Run (requested, started, done or failed), approval vote and refusal is
    recorded. `/platform audit checkout` shows only what touched checkout.
    """

    name = "audit"
    usage = "[service]"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        service = args.optional()
        args.done()
        entries = await ctx.audit.recent(
            service=ServiceName(service) if service else None, limit=LIMIT
        )
        if service is not None and not entries:
            try:
                ctx.catalog.service(service)
            except UnknownName as exc:
                raise UsageError(escape(str(exc)), usage=Audit.full_usage()) from None
        scope = f" for `{service}`" if service else ""
        if not entries:
            return Reply(text=f"No audit entries{scope} yet.")
        lines = [f"*Last {len(entries)} audit entries{scope}* (newest first)"]
        for entry in entries:
            where = "/".join(x for x in (entry.service, entry.environment) if x)
            what = entry.detail.get("action") or entry.detail.get("command") or ""
            line = f"`{entry.at:%Y-%m-%d %H:%M}Z` <@{entry.actor}> *{escape(entry.event)}*"
            if where:
                line += f" {escape(where)}"
            if what:
                line += f" — {escape(truncate(str(what), 120))}"
            if entry.detail.get("error"):
                line += f" ({escape(truncate(str(entry.detail['error']), 120))})"
            lines.append(line)
        return Reply(text=truncate("\n".join(lines), 3000))
