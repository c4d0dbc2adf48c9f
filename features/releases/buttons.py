"""Buttons for Argo CD's automated sync around a rollback.

Argo CD refuses a rollback while automated sync is on (and auto-sync would undo it), so
`/platform rollback` on such an environment changes nothing and offers "Turn off
auto-sync and roll back"; once that rollback is done, a message in the service's channel
offers "Turn auto-sync back on". Both propose an Action like the commands do: the
clicker's rights are checked by planning, and approval policy applies.
"""

from __future__ import annotations

from features.kit.context import Button, Context
from features.releases.actions import AUTO_SYNC_BACK_ON, AUTO_SYNC_OFF_AND_ROLL_BACK, SetAutoSync
from features.releases.planning import auto_sync_refusal, plan_rollback, propose_release
from features.releases.targets import AutoSyncOn, resolve_target
from kernel.errors import UsageError
from kernel.interactions import Click, Reply


class RollBackWithoutAutoSync(Button):
    """Turn off auto-sync and roll back (value: `<service> <env> <history id>`)."""

    action_id = AUTO_SYNC_OFF_AND_ROLL_BACK

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        parts = click.value.split()
        if len(parts) != 3 or not parts[2].isdigit():
            return Reply(text="This button does not name a rollback; nothing was done.")
        service, env, revision = parts[0][:60], parts[1][:60], int(parts[2][:9])
        try:
            action = await plan_rollback(
                ctx, service=service, env=env, to_revision=revision, disable_auto_sync=True
            )
        except UsageError as exc:
            return Reply(text=exc.message)
        except AutoSyncOn as on:  # cannot happen with disable_auto_sync; say it plainly
            return auto_sync_refusal(on)
        return await propose_release(ctx, action)


class TurnAutoSyncBackOn(Button):
    """Turn Argo CD's automated sync back on (value: `<service> <env>`)."""

    action_id = AUTO_SYNC_BACK_ON

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        parts = click.value.split()
        if len(parts) != 2:
            return Reply(text="This button does not name an environment; nothing was done.")
        try:
            target = await resolve_target(ctx, parts[0][:60], parts[1][:60], verb="change")
        except UsageError as exc:
            return Reply(text=exc.message)
        if target.backend != "argocd":
            return Reply(text=f"{target.where} is not deployed by Argo CD; nothing to turn on.")
        action = SetAutoSync(service=target.service, env=target.env, enabled=True)
        return await propose_release(ctx, action)
