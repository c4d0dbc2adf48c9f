"""What the verdict says in the deploy's thread: healthy, or degraded with the numbers,
the Grafana link over the same range, and what happens next (a Roll back button, or the
bot's own rollback)."""

from __future__ import annotations

from typing import Any

from features.verification.tables import VerificationRow
from features.verification.verdict import Observed, QueryResult, formatted
from kernel.blocks import actions, button, context, message_text, section
from kernel.mrkdwn import code, escape

ROLL_BACK = "verify.rollback"
"""The Roll back button under a degraded verdict; its value is the release Run's id."""

ICONS = {"healthy": ":white_check_mark:", "degraded": ":warning:", "unknown": ":grey_question:"}


def line(result: QueryResult) -> str:
    """`error ratio: 0.20% -> 12.00% (degraded)`."""
    before, after = formatted(result.before, result.unit), formatted(result.after, result.unit)
    mark = {"degraded": " *degraded*", "unknown": " (no data)"}.get(result.state, "")
    return f"• {escape(result.name)}: {before} → {after}{mark}"


def verdict_message(
    row: VerificationRow,
    observed: Observed,
    *,
    grafana: str | None,
    offer_rollback: bool,
    rollback_run: str | None = None,
    rollback_error: str | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """The verdict's text and blocks."""
    state = observed.state
    what = "Deploy of" if row.kind == "deploy" else "Rollback of"
    where = f"{code(row.service)} in {code(row.environment)}"
    minutes = max(1, round(row.window_seconds / 60))
    span = f"{minutes} min" if row.window_seconds >= 60 else f"{row.window_seconds} s"
    headline = {
        "healthy": f"{ICONS['healthy']} *Healthy*: {what} {where} ({escape(row.version)})",
        "degraded": f"{ICONS['degraded']} *Degraded*: {what} {where} ({escape(row.version)})",
        "unknown": f"{ICONS['unknown']} *Not verified*: {what} {where} "
        f"({escape(row.version)}): Prometheus had no data for its health queries",
    }[state]
    text = f"{headline}\n{span} after the rollout against the {span} before (mean):"
    lines = [line(r) for r in observed.results]
    blocks: list[dict[str, Any]] = [section(text), section("\n".join(lines) or "no queries")]
    notes: list[str] = []
    cut = observed.end.timestamp() < row.finished_at.timestamp() + row.window_seconds - 1
    if cut:
        notes.append("The window after was cut short: it ends now.")
    for name, error in observed.errors.items():
        notes.append(f"{escape(name)}: Prometheus said {escape(error)}")
    if grafana:
        notes.append(f"<{escape(grafana)}|Grafana over the same range>")
    if notes:
        blocks.append(context(*notes))
    if rollback_run is not None:
        blocks.append(
            section(
                f":rewind: Rolling back by myself: the `{escape(row.environment)}` policy says "
                f"`auto_rollback: true` and {_worse(observed)}. Rollback Run `{rollback_run}`."
            )
        )
    elif rollback_error is not None:
        blocks.append(
            section(
                f":x: The policy says roll back by myself, but I could not: "
                f"{rollback_error}. Use `/platform rollback {escape(row.service)} "
                f"{escape(row.environment)}`."
            )
        )
    if offer_rollback:
        blocks.append(actions(button(ROLL_BACK, "Roll back", value=row.run_id, style="danger")))
    summary = f"{headline} — " + "; ".join(
        f"{r.name} {formatted(r.before, r.unit)} → {formatted(r.after, r.unit)}"
        for r in observed.results
    )
    return message_text(summary), blocks


def _worse(observed: Observed) -> str:
    worse = [r for r in observed.results if r.state == "degraded"]
    return ", ".join(
        f"{escape(r.name)} went {formatted(r.before, r.unit)} → {formatted(r.after, r.unit)}"
        for r in worse
    )
