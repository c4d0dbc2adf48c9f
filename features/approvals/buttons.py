"""The approval card's buttons: Approve, and Reject, which asks why in a modal.

A button's value is only the request's id; who may vote is decided by the desk at the
moment of the click (see features/approvals/desk.py), never by anything else in the payload.
"""

from __future__ import annotations

from typing import Any

from features.approvals.card import APPROVE, REJECT
from features.approvals.request import ApprovalDesk
from features.kit.context import Button, Context, Form
from kernel.blocks import input_block, modal, text_input
from kernel.interactions import Click, Reply, Submission

REJECT_FORM = "approval.reject"
REASON_BLOCK = "reason"
EMPTY_REASON = "Say why you reject it, so the requester knows what to change."


class _DeskHandler:
    """A handler that takes its votes to the approval desk it was registered with."""

    def __init__(self, desk: ApprovalDesk) -> None:
        self.desk = desk


class ApproveButton(_DeskHandler, Button):
    """Approve: counts once per eligible person; the last needed vote starts the Run."""

    action_id = APPROVE

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        desk = self.desk
        answer = await desk.vote(click.value, voter=click.user, approve=True)
        return Reply(text=answer.text)


class RejectButton(_DeskHandler, Button):
    """Reject: checks the clicker first, then opens a modal asking why."""

    action_id = REJECT

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        desk = self.desk
        refusal = await desk.refusal(click.value, voter=click.user, approve=False)
        if refusal is not None:
            return Reply(text=refusal)
        if not click.trigger_id:
            return Reply(text="Slack sent no way to open the form; click Reject again.")
        await ctx.ports.modals.open(
            click.trigger_id, reject_modal(click.value[:64], click.channel or "")
        )
        return None


class RejectForm(_DeskHandler, Form):
    """The reason for a rejection: required, shown on the card and told to the requester."""

    callback_id = REJECT_FORM

    async def submit(self, ctx: Context, submission: Submission) -> dict[str, str] | None:
        approval_id, _, channel = submission.private_metadata.partition("|")
        reason = str(submission.values.get(REASON_BLOCK) or "").strip()
        if not reason:
            return {REASON_BLOCK: EMPTY_REASON}
        desk = self.desk
        answer = await desk.vote(
            approval_id, voter=submission.user, approve=False, reason=reason[:500]
        )
        if channel:
            await ctx.ports.messenger.ephemeral(channel, submission.user, text=answer.text)
        else:
            await ctx.ports.messenger.post(submission.user, text=answer.text)
        return None


def reject_modal(approval_id: str, channel: str) -> dict[str, Any]:
    """The modal: one required multi-line input; metadata `<request id>|<channel>`."""
    return modal(
        REJECT_FORM,
        "Reject the change",
        [
            input_block(
                REASON_BLOCK,
                "Why do you reject it?",
                text_input("value", multiline=True, max_length=500),
            )
        ],
        submit="Reject",
        private_metadata=f"{approval_id}|{channel}",
    )
