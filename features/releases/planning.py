"""Planning and proposing a release: from what a person typed to an Action bound for
approval, one way for the commands, the release buttons and the alert's Rollback.

1. Plan from the live state (`plan_deploy`, `plan_rollback`): check the service, the
   environment, the person's rights and the version, then ask the environment's backend
   what runs now, so the Action holds exactly what will change. Its fingerprint binds
   the approval; if the environment moves before the vote, the executor's
   `stale_reason` refuses the approval.
2. Propose it (`propose_release`): `ctx.changes` decides whether it runs now or waits
   for approval; the lock key `<service>/<env>` keeps two at once from overlapping.
"""

from __future__ import annotations

from features.kit.context import Context
from features.releases.actions import AUTO_SYNC_OFF_AND_ROLL_BACK, Deploy, Rollback, SetAutoSync
from features.releases.backends import ArgoCDBackend, backend_for
from features.releases.targets import AutoSyncOn, check_version, resolve_target
from kernel.actions import Action
from kernel.blocks import actions, button, section
from kernel.errors import ChangeRefused, UsageError
from kernel.ids import RunId
from kernel.interactions import Reply
from kernel.mrkdwn import escape


async def plan_deploy(ctx: Context, *, service: str, env: str, version: str) -> Deploy:
    """The Deploy that puts `version` into `service` in `env`, from the live state."""
    target = await resolve_target(ctx, service, env, verb="deploy")
    check_version(version)
    return await backend_for(ctx.ports, target.backend).plan_deploy(target, version)


async def plan_rollback(
    ctx: Context,
    *,
    service: str,
    env: str,
    to_revision: int | None = None,
    disable_auto_sync: bool = False,
) -> Rollback:
    """The Rollback of `service` in `env` to `to_revision` (default: the previous one).

    AutoSyncOn when Argo CD's automated sync is on and `disable_auto_sync` is False.
    """
    target = await resolve_target(ctx, service, env, verb="roll back")
    return await backend_for(ctx.ports, target.backend).plan_rollback(
        target, to_revision=to_revision, disable_auto_sync=disable_auto_sync
    )


async def plan_auto_sync_back_on(
    ctx: Context, *, service: str, env: str, rollback_run: str | None
) -> SetAutoSync:
    """Turning Argo CD's automated sync back on after the rollback Run `rollback_run`,
    exactly as that rollback found it (its Action keeps the policy)."""
    target = await resolve_target(ctx, service, env, verb="change")
    if target.backend != "argocd":
        raise UsageError(f"{target.where} is not deployed by Argo CD; nothing to turn on.")
    policy = None
    if rollback_run is not None:
        rollback = await ctx.ports.run_control.action(RunId(rollback_run))
        if (
            not isinstance(rollback, Rollback)
            or (rollback.service, rollback.env) != (service, env)
            or not rollback.disable_auto_sync
        ):
            raise UsageError(
                "This button does not name a rollback that turned auto-sync off; nothing was done."
            )
        policy = rollback.auto_sync_policy
    backend = ArgoCDBackend(ctx.ports)
    return await backend.plan_auto_sync_on(target, policy=policy, offer_run=rollback_run)


async def propose_release(
    ctx: Context,
    action: Action,
    *,
    reason: str | None = None,
    break_glass: bool = False,
    thread_key: str | None = None,
) -> Reply:
    """Hand the Action to `ctx.changes` and say what happens next (`thread_key`: its card
    and progress go in that thread of `ctx.channel`)."""
    service = action.affected_service() or ""
    try:
        proposal = await ctx.changes.propose(
            action,
            requested_by=ctx.user,
            idempotency_key=ctx.request_key,
            reply_channel=ctx.channel or None,
            announce_channel=ctx.catalog.channel_of_service(service),
            reason=reason,
            break_glass=break_glass,
            thread_key=thread_key,
        )
    except ChangeRefused as refused:
        return Reply(text=refused.message)
    change = "\n".join(action.change_lines())
    if not proposal.created:
        return Reply(text=f"Already asked; this request is Run `{proposal.run_id}`.\n{change}")
    if proposal.approval_id is not None:
        rule = f" (rule `{escape(proposal.rule)}`)" if proposal.rule else ""
        expires = (
            f", until {proposal.expires_at:%H:%M} UTC" if proposal.expires_at is not None else ""
        )
        return Reply(
            text=f"*Waiting for approval*{rule}{expires}: {escape(action.summary())}\n{change}"
        )
    glass = " :rotating_light: break-glass, without approval" if proposal.break_glass else ""
    return Reply(
        text=f"*Queued*{glass}: {escape(action.summary())}\n{change}\n"
        "Progress shows here and in the service's channel."
    )


async def start_rollback(
    ctx: Context,
    *,
    service: str,
    env: str,
    to_revision: int | None = None,
    reason: str | None = None,
    break_glass: bool = False,
    thread_key: str | None = None,
) -> Reply:
    """Plan and propose a rollback; used by `/platform rollback` and the alert's button.

    Every refusal is a Reply for the person (never an exception), and with Argo CD's
    automated sync on it is a Reply with a button to turn it off and roll back.
    """
    try:
        action = await plan_rollback(ctx, service=service, env=env, to_revision=to_revision)
    except UsageError as exc:
        return Reply(text=exc.message)
    except AutoSyncOn as on:
        return auto_sync_refusal(on, reason=reason)
    return await propose_release(
        ctx, action, reason=reason, break_glass=break_glass, thread_key=thread_key
    )


REASON_IN_BUTTON = 1800
"""The most of a reason the auto-sync button carries (a button value holds 2000)."""


def auto_sync_refusal(on: AutoSyncOn, *, reason: str | None = None) -> Reply:
    """Nothing ran: Argo CD would refuse, and would undo a rollback while auto-sync is on.
    The button carries the reason given, so the rollback it proposes keeps it."""
    target = on.target
    text = (
        f"Automated sync is on for `{escape(target.application)}`, so Argo CD refuses a "
        f"rollback of {target.where} (and would undo it). Nothing was changed. I can turn "
        f"auto-sync off and roll back to history id {on.to_revision}; you get a button to "
        "turn it back on after."
    )
    value = f"{target.service} {target.env} {on.to_revision}"
    if reason:
        value += " " + reason[:REASON_IN_BUTTON]
    return Reply(
        text=text,
        blocks=[
            section(text),
            actions(
                button(
                    AUTO_SYNC_OFF_AND_ROLL_BACK,
                    "Turn off auto-sync and roll back",
                    value=value,
                    style="danger",
                )
            ),
        ],
    )
