"""The approval card: one message per request in the owning team's channel, updated in
place as votes come in, until it says approved, rejected, expired or stale.

Its buttons carry only the request's id; everything else is looked up at click time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from features.approvals.request import ApprovalRequest
from kernel.blocks import actions, button, context, message_text, section
from kernel.mrkdwn import escape

APPROVE = "approval.approve"
REJECT = "approval.reject"

HEADLINES = {
    "pending": ":lock: *Approval needed*",
    "approved": ":white_check_mark: *Approved*",
    "rejected": ":no_entry: *Rejected*",
    "expired": ":hourglass: *Expired*",
    "stale": ":warning: *Stale*",
}


def card_key(approval_id: str) -> str:
    """The outbox message key of a request's card."""
    return f"approval:{approval_id}"


def render_card(request: ApprovalRequest) -> tuple[str, list[dict[str, Any]]]:
    """The card's fallback text and blocks for the request as it is now."""
    rule = request.requirement
    headline = (
        f"{HEADLINES.get(request.state, request.state)}: {escape(request.summary)} "
        f"(asked by <@{request.requested_by}>)"
    )
    details = [
        "*What will change:*",
        *(f"• {line}" for line in request.change_lines),
        f"*Reason:* {escape(request.reason)}" if request.reason else "*Reason:* none given",
        f"*Rule:* `{escape(rule.rule)}`: {rule.approvals} approval(s) from {rule.approvers_text()}",
    ]
    if request.state == "pending":
        details.append(f"*Expires:* {_time(request.expires_at)}; after that, ask again.")
    details.append(f"*Votes:* {_votes(request)}")
    blocks: list[dict[str, Any]] = [section(headline), section("\n".join(details))]
    outcome = _outcome(request)
    if outcome:
        blocks.append(context(outcome))
    if request.state == "pending":
        blocks.append(
            actions(
                button(APPROVE, "Approve", value=request.id, style="primary"),
                button(REJECT, "Reject", value=request.id, style="danger"),
                block_id="approval_actions",
            )
        )
    return message_text(headline), blocks


def _outcome(request: ApprovalRequest) -> str | None:
    why = escape(request.closed_reason or "")
    if request.state == "approved":
        return "Approved; the change runs now (see its progress message)."
    if request.state == "rejected":
        rejecter = next((v.voter for v in request.votes if v.vote == "reject"), None)
        by = f" by <@{rejecter}>" if rejecter else ""
        return f"Rejected{by}: {why or 'no reason given'}. Nothing was changed."
    if request.state == "expired":
        return (
            f"Expired at {_time(request.expires_at)} without enough approvals. "
            "Nothing was changed; ask again if it is still needed."
        )
    if request.state == "stale":
        where = request.environment or "the target"
        return f"{escape(where)} moved since: {why}. Nothing was changed; ask again."
    return None


def _votes(request: ApprovalRequest) -> str:
    needed = request.requirement.approvals
    given = [
        f"<@{v.voter}> {'approved' if v.vote == 'approve' else 'rejected'}" for v in request.votes
    ]
    return f"{request.approvals} of {needed}" + (": " + ", ".join(given) if given else "")


def _time(at: datetime) -> str:
    return f"{at:%H:%M} UTC"
