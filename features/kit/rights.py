"""Who may do what to something that already exists (a Run, a failed new service).

The rules of who may *ask* for a change live with the feature that plans it; who may
*approve* one lives in approvals' policy. Besides them: who may act on a Run, and the
common "the owning team or a platform admin" of a service in an environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog import UnknownName, membership_of
from features.kit.context import Context
from kernel.errors import UsageError
from kernel.ids import SlackUserId
from kernel.mrkdwn import code, escape


async def is_requester_or_admin(ctx: Context, requester: SlackUserId, user: SlackUserId) -> bool:
    """Who may act on a Run after it failed: whoever asked for it, or a platform admin."""
    if requester == user:
        return True
    email = await ctx.directory.email_of(user)
    return (await membership_of(ctx.catalog, ctx.directory, user, email=email)).platform_admin


@dataclass(frozen=True)
class Place:
    """A service in one environment, as the catalog says, with its owner team."""

    service: str
    env: str
    team: str

    @property
    def where(self) -> str:
        return f"`{escape(self.service)}` in `{escape(self.env)}`"


def lookup_place(ctx: Context, service: str, env: str) -> Place:
    """Where `service` runs in `env`; UsageError (with did-you-mean) if it does not."""
    try:
        entry = ctx.catalog.service(service)
        ctx.catalog.environment(env)
    except UnknownName as exc:
        raise UsageError(escape(str(exc))) from None
    if env not in entry.environments:
        runs_in = ", ".join(code(e) for e in entry.environments)
        raise UsageError(
            f"`{escape(service)}` does not run in `{escape(env)}`; it runs in {runs_in}."
        )
    return Place(service=service, env=env, team=entry.owner)


async def require_owner_or_admin(ctx: Context, place: Place, *, verb: str) -> None:
    """UsageError naming who may, unless `ctx.user` is in the owning team or an admin."""
    email = await ctx.directory.email_of(ctx.user)
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    if place.team not in me.teams and not me.platform_admin:
        channel = escape(ctx.catalog.team(place.team).slack_channel)
        raise UsageError(
            f"Only the *{escape(place.team)}* team, which owns `{escape(place.service)}`, or a "
            f"platform admin may {verb}. Ask in {channel}."
        )
