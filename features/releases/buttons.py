"""Buttons for Argo CD's automated sync around a rollback.

Argo CD refuses a rollback while automated sync is on (and auto-sync would undo it), so
`/platform rollback` on such an environment changes nothing and offers "Turn off
auto-sync and roll back" (carrying the reason given); once that rollback is done, a
message in the service's channel offers "Turn auto-sync back on", which restores the
exact policy the rollback turned off and, once done, becomes a line saying who turned it
back on and when. Both propose an Action like the commands do: the clicker's rights are
checked by planning, and approval policy applies.
"""

from __future__ import annotations

from features.kit.context import Button, Context
from features.releases.actions import AUTO_SYNC_BACK_ON, AUTO_SYNC_OFF_AND_ROLL_BACK
from features.releases.planning import (
    REASON_IN_BUTTON,
    auto_sync_refusal,
    plan_auto_sync_back_on,
    plan_rollback,
    propose_release,
)
from features.releases.targets import AutoSyncOn
from kernel.errors import UsageError
from kernel.interactions import Click, Reply


class RollBackWithoutAutoSync(Button):
    """Turn off auto-sync and roll back (value: `<service> <env> <history id> [<reason>]`)."""

    action_id = AUTO_SYNC_OFF_AND_ROLL_BACK

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        parts = click.value.split(maxsplit=3)
        if len(parts) < 3 or not parts[2].isdigit():
            return Reply(text="This button does not name a rollback; nothing was done.")
        service, env, revision = parts[0][:60], parts[1][:60], int(parts[2][:9])
        reason = parts[3][:REASON_IN_BUTTON].strip() if len(parts) == 4 else None
        try:
            action = await plan_rollback(
                ctx, service=service, env=env, to_revision=revision, disable_auto_sync=True
            )
        except UsageError as exc:
            return Reply(text=exc.message)
        except AutoSyncOn as on:  # cannot happen with disable_auto_sync; say it plainly
            return auto_sync_refusal(on, reason=reason)
        return await propose_release(ctx, action, reason=reason or None)


class TurnAutoSyncBackOn(Button):
    """Turn Argo CD's automated sync back on as a rollback found it (value: `<service>
    <env> <rollback run id>`; `<service> <env>` from before the bot kept the policy)."""

    action_id = AUTO_SYNC_BACK_ON

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        parts = click.value.split()
        if len(parts) not in (2, 3):
            return Reply(text="This button does not name an environment; nothing was done.")
        run = parts[2][:64] if len(parts) == 3 else None
        try:
            action = await plan_auto_sync_back_on(
                ctx, service=parts[0][:60], env=parts[1][:60], rollback_run=run
            )
        except UsageError as exc:
            return Reply(text=exc.message)
        return await propose_release(ctx, action)
