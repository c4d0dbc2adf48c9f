"""`/platform access`: temporary Kubernetes access that ends by itself.

`access <service> <env> --role view|edit|debug --for 2h --reason "..."` proposes a
GrantAccess (approval policy decides: prod needs four eyes by default); `access list`
shows live grants; `access revoke <id>` ends one early; `access extend <id> [--for 1h]`
pushes its end out (again under policy; the warning before the end has the same as a
button).
"""

from __future__ import annotations

from catalog import UnknownName, membership_of
from features.access.actions import ROLES, ExtendAccess, GrantAccess, duration_text, parse_duration
from features.access.desk import AccessDesk, Grant
from features.kit.commands import Arguments, Command, CommandContext
from features.kit.context import Context
from features.kit.rights import lookup_place, require_owner_or_admin
from kernel.errors import ChangeRefused, UsageError
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape

SUBCOMMANDS = ("list", "revoke", "extend")


class AccessCommand(Command):
    """Get temporary access to a service's namespace; it ends by itself.

    `/platform access checkout prod --role edit --for 2h --reason "debug INC-42"` binds
    your cluster identity to the role in `checkout-prod` for two hours, after approval
    where policy requires it (prod: another person approves). Roles: `view`, `edit`,
    `debug`. A warning before the end offers Extend.
    `/platform access list [<service>]` shows live grants; `/platform access revoke <id>`
    ends one now; `/platform access extend <id> [--for 1h]` asks for more time.
    """

    name = "access"
    usage = (
        '<service> <env> --role view|edit|debug --for 2h --reason "..." | list [<service>] '
        "| revoke <id> | extend <id> [--for 1h]"
    )

    def __init__(self, desk: AccessDesk) -> None:
        self.desk = desk

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        first = args.optional()
        if first == "list":
            service = args.optional()
            args.done()
            return await self.list(ctx, service)
        if first == "revoke":
            return await self.revoke(ctx, args)
        if first == "extend":
            return await self.extend(ctx, args)
        if first is None:
            raise UsageError("Say which service and environment.", usage=self.full_usage())
        return await self.grant(ctx, first, args)

    async def grant(self, ctx: CommandContext, service: str, args: Arguments) -> Reply:
        role = args.option("role")
        length = args.option("for")
        reason = (args.option("reason") or "").strip()
        database = args.option("db")
        env = args.next("env")
        args.done()
        if database is not None:
            # `--db readonly`: a DatabaseAccess Action next to GrantAccess, its login (from
            # ServiceDatabases.issue_login(db, readonly=True)) handed over through a
            # single-use private page; the databases and read-only roles exist (issue 13).
            raise UsageError(
                "`--db` is not available yet: handing a read-only database login over "
                "through a private page is not built yet."
            )
        if role not in ROLES:
            raise UsageError(
                "Say which role: `--role view`, `--role edit` or `--role debug`.",
                usage=self.full_usage(),
            )
        if length is None:
            raise UsageError("Say for how long: `--for 2h` (access ends by itself then).")
        settings = ctx.catalog.model.access
        minutes = parse_duration(length, max_hours=settings.max_hours)
        if not reason:
            raise UsageError('Say why, for the approvers and the audit log: `--reason "..."`.')
        place = lookup_place(ctx, service, env)
        await require_owner_or_admin(ctx, place, verb=f"get access to it in {env}")
        identity = await self.desk.identity_of(ctx.user)
        if identity is None:
            raise UsageError(
                f"platform.yml does not say who you are in the clusters (`access.identities` "
                f"has no entry for <@{ctx.user}>). Ask the platform team to add your OIDC "
                "user or group."
            )
        for live in await self.desk.live(service=place.service):
            if live.user == ctx.user and live.env == place.env:
                raise UsageError(
                    f"You already have *{live.role}* access to {place.where} until "
                    f"{live.expires_at:%H:%M} UTC (grant {code(live.short_id)}). "
                    f"`/platform access extend {live.short_id}` asks for more time; "
                    f"`/platform access revoke {live.short_id}` ends it."
                )
        kind, name = identity
        action = GrantAccess(
            service=place.service,
            env=place.env,
            team=place.team,
            user=ctx.user,
            role=role,
            cluster_role=settings.roles[role],
            subject_kind="User" if kind == "User" else "Group",
            subject_name=name,
            namespace=ctx.catalog.namespace(place.service, place.env),
            minutes=minutes,
            reason=reason,
        )
        return await propose(ctx, action, reason=reason)

    async def list(self, ctx: CommandContext, service: str | None) -> Reply:
        if service is not None:
            try:
                ctx.catalog.service(service)
            except UnknownName as exc:
                raise UsageError(escape(str(exc))) from None
        grants = await self.desk.live(service=service)
        if not grants:
            where = f" to `{escape(service)}`" if service else ""
            return Reply(text=f"Nobody has temporary access{where} right now.")
        now = self.desk.clock.now()
        return Reply(text="\n".join(["Live access grants:", *(g.line(now) for g in grants)]))

    async def _find(self, args: Arguments) -> Grant:
        wanted = args.next("id").lower()
        matches = [g for g in await self.desk.live() if g.id.startswith(wanted)]
        if len(wanted) < 6 or len(matches) != 1:
            raise UsageError(
                f"No single live grant {code(wanted[:12])}; `/platform access list` shows "
                "their ids."
            )
        return matches[0]

    async def revoke(self, ctx: CommandContext, args: Arguments) -> Reply:
        grant = await self._find(args)
        args.done()
        if not await may_act_on(ctx, grant):
            raise UsageError(
                f"Only <@{grant.user}>, the *{escape(grant.team)}* team or a platform admin "
                "may revoke this grant."
            )
        await ctx.runs.submit(
            grant.revoke_action(why="revoked", by=ctx.user),
            requested_by=ctx.user,
            idempotency_key=f"access-revoke:{ctx.request_key}",
            reply_channel=ctx.channel,
        )
        return Reply(text=f"Revoking grant {code(grant.short_id)} of <@{grant.user}> now.")

    async def extend(self, ctx: CommandContext, args: Arguments) -> Reply:
        length = args.option("for")
        grant = await self._find(args)
        args.done()
        settings = ctx.catalog.model.access
        minutes = (
            parse_duration(length, max_hours=settings.max_hours)
            if length
            else min(int((grant.expires_at - grant.granted_at).total_seconds() // 60), 60)
        )
        return await extend_grant(ctx, grant, minutes=minutes)


async def may_act_on(ctx: Context, grant: Grant) -> bool:
    """The grantee, the owning team, or a platform admin."""
    if ctx.user == grant.user:
        return True
    email = await ctx.directory.email_of(ctx.user)
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    return me.platform_admin or grant.team in me.teams


async def extend_grant(ctx: Context, grant: Grant, *, minutes: int) -> Reply:
    """Propose an ExtendAccess (the command and the Extend button)."""
    if grant.state != "active":
        return Reply(text=f"Grant {code(grant.short_id)} is not active any more.")
    if ctx.user != grant.user:
        return Reply(text=f"Only <@{grant.user}> may extend their own access.")
    action = ExtendAccess(
        service=grant.service,
        env=grant.env,
        team=grant.team,
        user=grant.user,
        role=grant.role,
        grant_id=grant.id,
        from_generation=grant.generation,
        minutes=minutes,
    )
    return await propose(
        ctx, action, reason=grant.reason, verb=f"Extending by {duration_text(minutes)}"
    )


async def propose(
    ctx: Context, action: GrantAccess | ExtendAccess, *, reason: str, verb: str = "Granting"
) -> Reply:
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
            text=f"{verb} waits for approval (rule `{escape(proposal.rule or 'policy')}`); the "
            "card is in the team's channel."
        )
    return Reply(text=f"{verb}: {escape(action.summary())}. Follow the progress message.")
