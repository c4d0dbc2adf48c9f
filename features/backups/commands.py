"""`/platform backup`, `/platform backups` and `/platform restore`.

Each reads the live state first (Velero's storage location, the backup asked for, the
namespace to restore into), so bad input is answered at once in words, and only an
Action that can work is proposed: through the approval policy to a durable Run.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from catalog.load import did_you_mean
from features.backups.actions import RestoreCopy, RestoreOver, TakeBackup, hours_text, parse_ttl
from features.backups.render import backup_line, schedule_line, where_is_storage
from features.kit.commands import Arguments, Command, CommandContext
from features.kit.context import Context
from features.kit.rights import Place, lookup_place, require_owner_or_admin
from kernel.errors import AdapterError, ChangeRefused, UsageError, adapter_call
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape
from kernel.ports.backups import BackupInfo, ClusterBackups, backup_selector, schedule_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
SHOWN = 15


def velero_of(ctx: Context, place: Place) -> tuple[ClusterBackups, str]:
    """The cluster's Velero and the cluster's name; UsageError when not configured."""
    cluster = ctx.catalog.environment(place.env).cluster
    try:
        return ctx.adapters.require("velero").backups(cluster), cluster
    except AdapterError as exc:
        raise UsageError(f"{escape(str(exc))}.") from None


async def storage_ready(velero: ClusterBackups, name: str) -> None:
    location = await adapter_call(velero.location(name), reading="Velero's storage location")
    if location is None or not location.available:
        raise UsageError(where_is_storage(name, location) + ".")


def _stamp(ctx: Context) -> tuple[datetime, str]:
    """Now, and a short suffix from the request (so names never collide)."""
    return datetime.now(UTC), hashlib.sha256(ctx.request_key.encode()).hexdigest()[:5]


class BackupCommand(Command):
    """Back up a service's namespace with Velero; progress shows in place.

    `/platform backup checkout prod [--ttl 720h]` makes a Velero Backup of `checkout-prod`
    (volume snapshots where the storage supports them), kept for the TTL (`72h`, `30d`;
    default from platform.yml). The progress message follows its phase (New, InProgress,
    Completed, PartiallyFailed, Failed), its item counts, warnings and errors, and says when
    it expires. `/platform backups checkout prod` lists them.
    """

    name = "backup"
    usage = "<service> <env> [--ttl 720h]"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        ttl = args.option("ttl")
        service, env = args.next("service"), args.next("env")
        args.done()
        settings = ctx.catalog.model.backups
        hours = (
            parse_ttl(ttl, max_hours=settings.max_ttl_hours) if ttl else settings.default_ttl_hours
        )
        place = lookup_place(ctx, service, env)
        await require_owner_or_admin(ctx, place, verb=f"back it up in {env}")
        velero, cluster = velero_of(ctx, place)
        await storage_ready(velero, "default")
        now, suffix = _stamp(ctx)
        action = TakeBackup(
            service=place.service,
            env=place.env,
            team=place.team,
            cluster=cluster,
            namespace=ctx.catalog.namespace(place.service, place.env),
            backup_name=f"{place.service}-{place.env}-{now:%Y%m%d%H%M%S}-{suffix}",
            ttl_hours=hours,
        )
        reply = await propose(ctx, action, reason="")
        if reply is not None:
            return reply
        return Reply(
            text=f"Backing up {place.where} as {code(action.backup_name)} (kept "
            f"{hours_text(hours)}). Follow the progress message."
        )


class BackupsCommand(Command):
    """List a service's backups in an environment, newest first, and its schedule.

    `/platform backups checkout prod`: each backup's phase, items, errors and warnings,
    age and expiry (Velero does not report sizes), and the daily Schedule if there is one.
    """

    name = "backups"
    usage = "<service> <env>"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        service, env = args.next("service"), args.next("env")
        args.done()
        place = lookup_place(ctx, service, env)
        velero, _ = velero_of(ctx, place)
        found = await adapter_call(
            velero.backups(selector=backup_selector(place.service, place.env)),
            reading=f"the backups of {place.service} in {place.env}",
        )
        schedule = await adapter_call(
            velero.schedule(schedule_name(place.service, place.env)), reading="the schedule"
        )
        now = datetime.now(UTC)
        lines = [f"Backups of {place.where}, newest first:"]
        lines += [backup_line(b, now) for b in found[:SHOWN]]
        if not found:
            lines = [f"No backups of {place.where} yet."]
        elif len(found) > SHOWN:
            lines.append(f"... and {len(found) - SHOWN} older.")
        lines.append(schedule_line(schedule, now))
        return Reply(text="\n".join(lines))


class RestoreCommand(Command):
    """Restore a backup: into a new namespace to look at it, or over one, after approval.

    `/platform restore checkout prod <backup>` (or `latest`: the newest Completed or
    PartiallyFailed one) restores into a fresh namespace
    (`checkout-prod-restore-...`): nothing is overwritten. To put a backup back over an
    existing namespace, name it: `--into checkout-prod`; what the backup holds then
    replaces what is there, after the approvals policy asks for (prod: another person).
    """

    name = "restore"
    usage = '<service> <env> <backup>|latest [--into <namespace>] [--reason "..."]'

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        into = args.option("into")
        reason = (args.option("reason") or "").strip()
        service, env = args.next("service"), args.next("env")
        name = args.next("backup")
        args.done()
        place = lookup_place(ctx, service, env)
        await require_owner_or_admin(ctx, place, verb=f"restore it in {env}")
        velero, cluster = velero_of(ctx, place)
        source = ctx.catalog.namespace(place.service, place.env)
        backup = await self._backup(velero, place, source, name)
        await storage_ready(velero, backup.storage_location or "default")
        now, suffix = _stamp(ctx)
        target = into or f"{source[:40]}-restore-{now:%m%d%H%M}-{suffix[:3]}"
        if not DNS_LABEL.fullmatch(target):
            raise UsageError(
                f"{code(target[:70])} is not a namespace name (lowercase letters, digits and "
                "`-`, at most 63)."
            )
        existing = await self._existing(ctx, cluster, target)
        if existing and target != source and not target.startswith(f"{source}-restore-"):
            raise UsageError(
                f"Namespace {code(target)} exists and is not {code(source)} nor one of its "
                "restore copies; restore into a new namespace or into "
                f"{code(source)} itself."
            )
        if existing and into is None:
            raise UsageError(f"Namespace {code(target)} exists; name another with `--into`.")
        kind = RestoreOver if existing else RestoreCopy
        action = kind(
            service=place.service,
            env=place.env,
            team=place.team,
            cluster=cluster,
            backup_name=backup.name,
            restore_name=f"{backup.name[:200]}-{now:%Y%m%d%H%M%S}",
            source_namespace=source,
            target_namespace=target,
            items=backup.items_total,
            backup_phase=backup.phase,
        )
        reply = await propose(ctx, action, reason=reason)
        if reply is not None:
            return reply
        verb = "over" if existing else "into the new namespace"
        return Reply(
            text=f"Restoring {code(backup.name)} {verb} {code(target)}. Follow the progress "
            "message."
        )

    async def _backup(
        self, velero: ClusterBackups, place: Place, source: str, name: str
    ) -> BackupInfo:
        if name == "latest":
            return await self._latest(velero, place)
        found = await adapter_call(velero.backup(name), reading=f"backup {name}")
        if found is None or source not in found.namespaces:
            known = await adapter_call(
                velero.backups(selector=backup_selector(place.service, place.env)),
                reading=f"the backups of {place.service} in {place.env}",
            )
            hint = did_you_mean(name, [b.name for b in known]).replace("'", "`")
            raise UsageError(
                f"No backup {code(name[:120])} of {place.where}{escape(hint) or '.'} "
                f"`/platform backups {escape(place.service)} {escape(place.env)}` lists them."
            )
        if not found.restorable:
            if found.phase in ("", "New", "InProgress"):
                raise UsageError(
                    f"Backup {code(found.name)} is still {found.phase or 'New'} "
                    f"({found.items_done}/{found.items_total} items); it can be restored once "
                    "it is Completed."
                )
            raise UsageError(
                f"Backup {code(found.name)} {found.phase}; it holds nothing to restore. "
                "Pick a Completed one from `/platform backups`."
            )
        return found

    async def _latest(self, velero: ClusterBackups, place: Place) -> BackupInfo:
        known = await adapter_call(
            velero.backups(selector=backup_selector(place.service, place.env)),
            reading=f"the backups of {place.service} in {place.env}",
        )
        for backup in known:  # newest first
            if backup.restorable:
                return backup
        raise UsageError(
            f"{place.where} has no Completed backup to restore yet; take one with "
            f"`/platform backup {place.service} {place.env}`, or see them with "
            f"`/platform backups {place.service} {place.env}`."
        )

    async def _existing(self, ctx: Context, cluster: str, namespace: str) -> bool:
        try:
            clusters = ctx.adapters.require("kubernetes").cluster(cluster)
        except AdapterError as exc:
            raise UsageError(f"{escape(str(exc))}.") from None
        state = await adapter_call(
            clusters.describe_namespace(namespace), reading=f"namespace {namespace}"
        )
        if state is not None and state.terminating:
            raise UsageError(
                f"Namespace {code(namespace)} is being deleted; wait until it is gone, or "
                "restore into another one."
            )
        return state is not None


async def propose(ctx: Context, action: TakeBackup | RestoreCopy, *, reason: str) -> Reply | None:
    """Through the approval policy; a Reply when it waits or is refused, else None."""
    try:
        proposal = await ctx.changes.propose(
            action,
            requested_by=ctx.user,
            idempotency_key=f"{action.kind}:{ctx.request_key}",
            reply_channel=ctx.channel,
            announce_channel=ctx.catalog.channel_of_service(action.service),
            reason=reason,
        )
    except ChangeRefused as exc:
        return Reply(text=exc.message)
    if proposal.approval_id is not None:
        return Reply(
            text=f"{escape(action.summary())} waits for approval (rule "
            f"`{escape(proposal.rule or 'policy')}`); the card is in the team's channel."
        )
    return None
