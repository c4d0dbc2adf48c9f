"""`/platform whoami`: your teams and roles, as the platform sees them."""

from __future__ import annotations

from catalog import membership_of
from features.kit.commands import Arguments, Command, CommandContext
from kernel.interactions import Reply
from kernel.mrkdwn import escape


class WhoAmI(Command):
    """Show your teams, your roles and the services you can change.

    Teams come from the catalog (listed members) and from each team's Slack user group.
    """

    name = "whoami"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        args.done()
        email = await ctx.directory.email_of(ctx.user)
        me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
        lines = [f"You are <@{ctx.user}>" + (f" ({escape(email)})" if email else "") + "."]
        if me.teams:
            lines.append("*Teams:* " + ", ".join(f"`{t}`" for t in me.teams))
            services = [s for t in me.teams for s in ctx.catalog.services_of(t)]
            if services:
                lines.append("*Services you own:* " + ", ".join(f"`{s}`" for s in services))
        elif me.platform_admin:
            lines.append("*Teams:* none (as a platform admin you need none).")
        else:
            lines.append(
                "*Teams:* none. Ask a platform admin to add you to your team in platform.yml "
                "or to its Slack user group."
            )
        roles = ["platform admin"] if me.platform_admin else []
        roles += [f"member of {t}" for t in me.teams]
        approves = await approver_policies(ctx, me.teams)
        if approves:
            roles.append("approver for " + ", ".join(f"`{p}`" for p in approves))
        lines.append("*Roles:* " + (", ".join(roles) if roles else "developer (no special roles)"))
        return Reply(text="\n".join(lines))


async def approver_policies(ctx: CommandContext, teams: tuple[str, ...]) -> list[str]:
    """Approval policies in which the user may approve: through a team or a user group."""
    names = []
    for policy in ctx.catalog.model.approval_policies:
        by_team = bool(set(policy.approvers.teams) & set(teams))
        by_group = False
        for group in policy.approvers.usergroups:
            if by_team or by_group:
                break
            by_group = ctx.user in await ctx.directory.usergroup_members(group)
        if by_team or by_group:
            names.append(policy.name)
    return names
