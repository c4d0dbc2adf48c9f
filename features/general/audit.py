"""`/platform audit [service] [--user U…] [--action deploy] [--since 2h] [--until …]
[--page N]`: the audit log, newest first, filtered, 20 to a page (also for a service that
is no longer in the catalog, such as a cleaned-up new service, if it has entries)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from catalog import UnknownName
from features.kit.commands import Arguments, Command, CommandContext
from kernel.errors import UsageError
from kernel.ids import ServiceName, SlackUserId
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape, truncate

LIMIT = 20
MAX_PAGE = 500

_AGO = re.compile(r"^(\d{1,5})([mhd])$")
_USER = re.compile(r"^<?@?([UW][A-Z0-9]{2,20})(\|[^>]*)?>?$")
_EVENT = re.compile(r"^[a-z][a-z0-9_.-]{0,79}$")


def parse_when(text: str, *, now: datetime, what: str) -> datetime:
    """`30m`, `2h`, `7d` ago, or an ISO date/time (UTC unless it says)."""
    match = _AGO.fullmatch(text)
    if match:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{code(text[:40])} is not a time for `--{what}`: write e.g. `2h`, `7d`, "
            "`2026-12-01` or `2026-12-01T14:00`."
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Audit(Command):
    """Show who changed what recently, for everything or for one service.

    Every Run (requested, started, done or failed), approval vote and refusal is
    recorded. `/platform audit checkout` shows only what touched checkout; filter with
    `--user <@someone>`, `--action secret` (an event or its start), `--since 2h` /
    `--until 2026-12-03`; `--page 2` shows the 20 before those.
    """

    name = "audit"
    usage = "[service] [--user <@user>] [--action <event>] [--since 2h] [--until <time>] [--page N]"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        user_text, event = args.option("user"), args.option("action")
        since_text, until_text, page_text = (
            args.option("since"),
            args.option("until"),
            args.option("page"),
        )
        service = args.optional()
        args.done()
        now = datetime.now(UTC)
        actor = None
        if user_text is not None:
            match = _USER.fullmatch(user_text.strip())
            if match is None:
                raise UsageError(
                    "Say whose entries as a mention or a Slack id: `--user @alice` "
                    "(Slack turns it into a mention) or `--user U01ALICE`.",
                    usage=Audit.full_usage(),
                )
            actor = SlackUserId(match.group(1))
        if event is not None and not _EVENT.fullmatch(event):
            raise UsageError(
                f"{code(event[:40])} is not an event name; e.g. `--action secret` or "
                "`--action run.failed`.",
                usage=Audit.full_usage(),
            )
        since = parse_when(since_text, now=now, what="since") if since_text else None
        until = parse_when(until_text, now=now, what="until") if until_text else None
        page = 1
        if page_text is not None:
            if not page_text.isdigit() or not 1 <= int(page_text) <= MAX_PAGE:
                raise UsageError(f"`--page` takes a number from 1 to {MAX_PAGE}.")
            page = int(page_text)
        entries = await ctx.audit.recent(
            service=ServiceName(service) if service else None,
            limit=LIMIT + 1,
            actor=actor,
            event=event,
            since=since,
            until=until,
            offset=(page - 1) * LIMIT,
        )
        more, entries = len(entries) > LIMIT, entries[:LIMIT]
        if service is not None and not entries and page == 1:
            try:
                ctx.catalog.service(service)
            except UnknownName as exc:
                raise UsageError(escape(str(exc)), usage=Audit.full_usage()) from None
        scope = _scope(service, actor, event, since, until)
        if not entries:
            return Reply(
                text=f"No audit entries{scope}" + (f" on page {page}." if page > 1 else " yet.")
            )
        first = (page - 1) * LIMIT + 1
        counted = (
            f"Last {len(entries)} audit entries"
            if page == 1
            else f"Audit entries {first}-{first + len(entries) - 1}"
        )
        lines = [f"*{counted}{scope}* (newest first)"]
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
            if entry.run_id:
                line += f" · Run `{escape(entry.run_id[:12])}`"
            lines.append(line)
        if more:
            lines.append(f"Older entries: add `--page {page + 1}`.")
        return Reply(text=truncate("\n".join(lines), 3000))


def _scope(
    service: str | None,
    actor: str | None,
    event: str | None,
    since: datetime | None,
    until: datetime | None,
) -> str:
    parts = []
    if service:
        parts.append(f"for `{escape(service)}`")
    if actor:
        parts.append(f"by <@{actor}>")
    if event:
        parts.append(f"of `{escape(event)}`")
    if since:
        parts.append(f"since {since:%Y-%m-%d %H:%M}Z")
    if until:
        parts.append(f"before {until:%Y-%m-%d %H:%M}Z")
    return (" " + " ".join(parts)) if parts else ""
