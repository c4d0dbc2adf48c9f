"""A Run's progress message: a headline and a line per step, updated in place.

Step titles are stored with the steps when the Run is submitted, so showing progress
never plans the Action again; only the summary and the failure buttons come from it.

Each failure is said once: on its step's line (the Run's error, made of those lines, is
not repeated under them). A system the bot is not configured for is not the requester's
problem: its step says so briefly, and one line under the steps names the settings and
who to ask (the platform team, from the catalog).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import RunRow, RunStepRow
from engine.outbox import Outbox
from kernel.blocks import actions, button, context, message_text, section
from kernel.ids import RunId

SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,20}$")
"""A Slack user id, shown as a mention; anything else (the bot's sweeper) is not."""
STEP_ICONS = {"pending": "○", "running": "◔", "done": "✓", "failed": "✗", "skipped": "–"}


@dataclass(frozen=True)
class RunView:
    """A Run and its steps as they are now, for rendering and tests."""

    id: RunId
    kind: str
    state: str
    summary: str
    requested_by: str
    error: str | None
    steps: list[tuple[str, str, str | None]]  # (title, state, error or live detail)
    flags: dict[str, Any] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)
    """Extra (action_id, label) buttons the executor offers on failure."""
    not_configured: list[tuple[str, str]] = field(default_factory=list)
    """(system, the settings it needs) of each system a failed step found unconfigured."""
    cancelled_by: str | None = None
    """Who cancelled it (rejected, or clicked when it was stale), when a person did."""


def render_progress(
    view: RunView, *, operators: str = "the platform team"
) -> tuple[str, list[dict[str, Any]]]:
    """The progress message: a headline and a line per step. `operators` (mrkdwn) is who
    to ask when the bot itself lacks a system's configuration."""
    from kernel.mrkdwn import escape

    headline = {
        "pending": "Queued",
        "running": "Running",
        "succeeded": "Done",
        "failed": "Failed",
        "cancelled": "Cancelled",
        "waiting_approval": "Waiting for approval",
    }.get(view.state, view.state)
    lines = []
    for title, state, error in view.steps:
        line = f"{STEP_ICONS.get(state, '?')} {escape(title)}"
        if error:
            line += f": {escape(error)}"
        lines.append(line)
    text = f"*{headline}*: {escape(view.summary)} (requested by <@{view.requested_by}>)"
    if view.flags.get("break_glass"):
        text += " :rotating_light: *break-glass*, without approval"
    blocks: list[dict[str, Any]] = [section(text)]
    if lines:
        blocks.append(section("\n".join(lines)))
    said = [f"{title}: {error}" for title, state, error in view.steps if state == "failed"]
    if view.error and view.error not in (*said, "; ".join(said)):
        by = view.cancelled_by
        who = f"Cancelled by <@{by}>: " if by and SLACK_USER.match(by) else ""
        blocks.append(context(who + escape(view.error)))
    for system, variables in view.not_configured:
        then = ", then press Retry" if view.state == "failed" else ""
        blocks.append(
            context(
                f":wrench: {escape(system)} is not configured on this bot (it needs "
                f"{escape(variables)}). That is not yours to fix: ask {operators}{then}."
            )
        )
    if view.state == "failed":
        buttons = [("run.retry", "Retry"), *view.buttons]
        blocks.append(
            actions(
                *(button(action_id, label, value=view.id) for action_id, label in buttons),
                block_id="run_actions",
            )
        )
    return message_text(text), blocks


Describe = Callable[[RunRow], tuple[str, list[tuple[str, str]]]]
"""(summary, failure buttons) of a Run, from its executor."""


class Progress:
    """Shows each Run as one Slack message, posted once and updated in place (and a
    quiet copy in the service's channel when the Run is announced there)."""

    def __init__(
        self, outbox: Outbox, describe: Describe, *, operators: str = "the platform team"
    ) -> None:
        self.outbox, self.describe, self.operators = outbox, describe, operators

    def show(self, session: Session, run_id: str) -> None:
        """In the caller's transaction: post or update the Run's progress message."""
        row = session.get_one(RunRow, run_id)
        announce = (row.flags or {}).get("announce_channel")
        if row.reply_channel is None and not announce:
            return
        session.flush()
        text, blocks = render_progress(self.view(session, RunId(run_id)), operators=self.operators)
        if row.reply_channel is not None:  # in the thread the Run was asked from, if any
            self.outbox.enqueue_post_or_update(
                session,
                row.reply_channel,
                f"run:{run_id}",
                text=text,
                blocks=blocks,
                thread_key=(row.flags or {}).get("thread_key"),
            )
        if announce and announce != row.reply_channel:
            quiet = [b for b in blocks if b.get("type") != "actions"]
            self.outbox.enqueue_post_or_update(
                session, announce, f"run:{run_id}:announce", text=text, blocks=quiet
            )

    def view(self, session: Session, run_id: RunId) -> RunView:
        row = session.get_one(RunRow, run_id)
        steps = list(
            session.execute(
                select(RunStepRow).where(RunStepRow.run_id == run_id).order_by(RunStepRow.position)
            ).scalars()
        )
        summary, buttons = self.describe(row)
        unconfigured = {
            (str(said["system"]), str(said["variables"]))
            for s in steps
            if s.state == "failed" and (said := (s.output or {}).get("not_configured"))
        }
        return RunView(
            id=run_id,
            kind=row.action_kind,
            state=row.state,
            summary=summary,
            requested_by=row.requested_by,
            error=row.error,
            steps=[(s.title or s.name, s.state, _said(s)) for s in steps],
            flags=dict(row.flags or {}),
            buttons=buttons,
            not_configured=sorted(unconfigured),
            cancelled_by=_cancelled_by(row),
        )


def _cancelled_by(row: RunRow) -> str | None:
    by = (row.result or {}).get("cancelled_by") if row.state == "cancelled" else None
    return str(by) if by else None


def _said(step: RunStepRow) -> str | None:
    """What a step's line says after its title: why it failed, its live detail while it
    runs, its outcome once done."""
    if step.error:
        return step.error
    if step.state == "running":
        return step.detail
    outcome = (step.output or {}).get("outcome") if step.state == "done" else None
    return str(outcome) if outcome else None
