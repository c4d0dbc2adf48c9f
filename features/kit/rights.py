"""Who may do what to something that already exists (a Run, a failed new service).

The rules of who may *ask* for a change live with the feature that plans it; who may
*approve* one lives in approvals' policy. This is the one shared rule besides them.
"""

from __future__ import annotations

from catalog import membership_of
from features.kit.context import Context
from kernel.ids import SlackUserId


async def is_requester_or_admin(ctx: Context, requester: SlackUserId, user: SlackUserId) -> bool:
    """Who may act on a Run after it failed: whoever asked for it, or a platform admin."""
    if requester == user:
        return True
    email = await ctx.directory.email_of(user)
    return (await membership_of(ctx.catalog, ctx.directory, user, email=email)).platform_admin
