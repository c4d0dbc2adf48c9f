"""Buttons on a Run's progress message: Retry picks a failed Run up where it stopped."""

from __future__ import annotations

from features.kit.context import Button, Context
from features.kit.rights import is_requester_or_admin
from kernel.errors import ChangeRefused
from kernel.ids import RunId
from kernel.interactions import Click, Reply


class RetryRun(Button):
    """Retry a failed Run: the requester or a platform admin may; done steps are skipped."""

    action_id = "run.retry"

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        run_id = RunId(click.value[:64])
        requester = await ctx.ports.run_control.requested_by(run_id)
        if requester is None:
            return Reply(text="That Run no longer exists; nothing was retried.")
        if not await is_requester_or_admin(ctx, requester, click.user):
            return Reply(
                text=f"Only <@{requester}>, who asked for this Run, or a platform admin "
                "may retry it."
            )
        try:
            retried = await ctx.ports.run_control.retry(run_id, by=click.user)
        except ChangeRefused as refused:
            return Reply(text=refused.message)
        if not retried:
            return Reply(text="This Run is not failed (any more), so there is nothing to retry.")
        return None
