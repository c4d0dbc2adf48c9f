"""The one door for every change: an Action becomes a durable Run, now or after approval.

`ChangeGate.propose` is what commands, buttons and alerts call. It asks the approval
policy whether the Action needs approval; if not, the Run is queued at once; if so, the
Run waits (`waiting_approval`) and an approval card is posted. A lock key on the Action
keeps two deploys or rollbacks of one service and environment from overlapping.
"""

from __future__ import annotations

from bot.domain import Action, ChangeRefused, Proposal, SlackChannelId, SlackUserId
from bot.mrkdwn import escape
from bot.runs import RunEngine, RunLocked


class ChangeGate:
    """`Changes` on the Run engine (approval policy: see approvals/)."""

    def __init__(self, engine: RunEngine) -> None:
        self.engine = engine

    async def propose(
        self,
        action: Action,
        *,
        requested_by: SlackUserId,
        idempotency_key: str,
        reply_channel: SlackChannelId | None = None,
        announce_channel: str | None = None,
        reason: str | None = None,
        break_glass: bool = False,
    ) -> Proposal:
        flags = {"announce_channel": announce_channel} if announce_channel else {}
        if reason:
            flags["reason"] = reason
        try:
            submitted = await self.engine.submit(
                action,
                requested_by=requested_by,
                idempotency_key=idempotency_key,
                reply_channel=reply_channel,
                flags=flags,
            )
        except RunLocked as held:
            raise ChangeRefused(locked_message(action, held)) from None
        return Proposal(run_id=submitted.run_id, created=submitted.created)


def locked_message(action: Action, held: RunLocked) -> str:
    """`rollback of checkout/prod in progress by alice since 04:12` for the requester."""
    what = escape(action.lock_key() or action.kind)
    state = "waiting for approval" if held.state == "waiting_approval" else "in progress"
    return (
        f"A {escape(held.kind)} of `{what}` is {state}, asked by <@{held.requested_by}> "
        f"at {held.since:%H:%M} UTC. Wait for it to finish, then try again."
    )
