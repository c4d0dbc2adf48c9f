"""`/platform approvals`: what waits for your approval, and what you asked for."""

from __future__ import annotations

from features.approvals.request import ApprovalDesk, ApprovalRequest
from features.kit.commands import Arguments, Command, CommandContext
from kernel.interactions import Reply
from kernel.mrkdwn import escape, truncate

STATES = {
    "pending": "waiting",
    "approved": "approved",
    "rejected": "rejected",
    "expired": "expired",
    "stale": "stale (ask again)",
}


class Approvals(Command):
    """Show the approval requests waiting for your vote, and the ones you asked for.

    Requests wait for you when you are in the group or team their rule names and you
    did not ask for them yourself. Vote with the buttons on each request's card.
    """

    name = "approvals"

    def __init__(self, desk: ApprovalDesk) -> None:
        self.desk = desk

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        args.done()
        waiting, mine = await self.desk.listing(ctx.user)
        lines = ["*Waiting for your vote*"]
        lines += [_line(r, with_requester=True) for r in waiting] or ["• nothing; all clear."]
        lines.append("*You asked for*")
        lines += [_line(r, with_requester=False) for r in mine[:10]] or [
            "• nothing yet. Changes that need approval show up here once you ask for one."
        ]
        return Reply(text=truncate("\n".join(lines), 3000))


def _line(request: ApprovalRequest, *, with_requester: bool) -> str:
    state = STATES.get(request.state, request.state)
    line = f"• `{escape(truncate(request.summary, 100))}`: {state}"
    if request.state == "pending":
        line += (
            f", {request.approvals} of {request.requirement.approvals} approval(s), "
            f"expires {request.expires_at:%H:%M} UTC"
        )
    if with_requester:
        line += f", asked by <@{request.requested_by}>"
    return line
