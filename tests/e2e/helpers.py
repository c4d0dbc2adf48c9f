"""Helpers the e2e tests share: waiting for Runs to finish, moving the stack's clock,
reading audit events and messages, and pressing a button as Slack sends that click."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import AuditRow, RunRow
from sandbox.app.stack import SandboxStack


async def settled(stack: SandboxStack, kind: str, n: int = 1, *, tries: int = 400) -> list[str]:
    """The states of the `kind` Runs, once at least `n` exist and all have finished
    (polled every 0.05 s, `tries` times)."""

    def states(session: Session) -> list[str]:
        rows = session.execute(
            select(RunRow.state).where(RunRow.action_kind == kind).order_by(RunRow.created_at)
        )
        return list(rows.scalars())

    for _ in range(tries):
        found = await stack.bot.db.run(states)
        if len(found) >= n and all(s in ("succeeded", "failed", "cancelled") for s in found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{kind} Runs did not finish: {await stack.bot.db.run(states)}")


async def advance(stack: SandboxStack, delta: timedelta) -> None:
    """Move the stack's injected clock and fire the timers now due."""
    stack.clock.advance(delta)
    await stack.bot.timers.fire_due()


async def events(stack: SandboxStack, prefix: str) -> list[str]:
    """The audit events starting with `prefix`, in the order they were written."""

    def read(session: Session) -> list[str]:
        rows = session.execute(
            select(AuditRow.event).where(AuditRow.event.startswith(prefix)).order_by(AuditRow.id)
        )
        return list(rows.scalars())

    return await stack.bot.db.run(read)


def said(stack: SandboxStack, channel: str, containing: str) -> Any:
    """The first message in `channel` whose text contains `containing`, or None."""
    return next((m for m in stack.slack.messages.get(channel, []) if containing in m.text), None)


async def click(
    stack: SandboxStack,
    user: str,
    action_id: str,
    value: str,
    *,
    channel: str,
    channel_name: str = "x",
    message_ts: str = "1.000001",
    ephemeral: bool = False,
) -> None:
    """Press a button on a message in `channel` (or on an ephemeral there), as Slack
    sends that click."""
    who, ws = stack.workspace.user(user), stack.workspace
    container: dict[str, Any] = {"type": "message", "channel_id": channel}
    if ephemeral:
        container["is_ephemeral"] = True
    else:
        container["message_ts"] = message_ts
    payload = {
        "type": "block_actions",
        "user": {"id": who.id, "username": who.name, "team_id": ws.team_id},
        "api_app_id": ws.app_id,
        "token": "sandbox",
        "team": {"id": ws.team_id, "domain": ws.domain},
        "container": container,
        "channel": {"id": channel, "name": channel_name},
        "trigger_id": stack.slack.issue_trigger_id(user=who.id),
        "actions": [
            {
                "action_id": action_id,
                "block_id": "b",
                "type": "button",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
        "response_url": stack.slack.new_response_url(channel=channel, user=who.id),
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    response = await stack.sender.raw(body, content_type="application/x-www-form-urlencoded")
    assert response.status == 200
