"""A chat-like harness: `await chat.say("/platform help", as_user="alice")`.

It drives the real bot the way Slack does (signed requests into /slack/events, or
Socket Mode envelopes) and answers with what the person would see: the reply in the
acknowledgement, or the ephemeral message that arrives through the response_url.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sandbox.app.stack import SandboxStack
from sandbox.standins.slack_api import RecordedCall

T = TypeVar("T")


@dataclass(frozen=True)
class Seen:
    """What the person saw after a command."""

    status: int
    text: str
    in_ack: bool
    blocks: tuple[dict[str, Any], ...] = ()


class Chat:
    def __init__(self, stack: SandboxStack) -> None:
        self.stack = stack
        self.slack = stack.slack
        self.sender = stack.sender

    async def say(
        self, text: str, *, as_user: str = "alice", channel: str = "#payments", wait: float = 5
    ) -> Seen:
        """Type `text` (with or without the leading `/platform `) as `as_user`."""
        text = text.removeprefix("/platform").strip()
        user = self.slack.workspace.user(as_user)
        mark, seen = len(self.slack.calls), len(self.slack.ephemerals)
        response = await self.sender.slash_command(text, user=as_user, channel=channel)
        if response.status != 200:
            return Seen(response.status, response.body, in_ack=True)
        body = response.json()
        if isinstance(body, dict) and body.get("text"):
            return Seen(200, body["text"], in_ack=True, blocks=tuple(body.get("blocks") or ()))

        def arrived(_: RecordedCall) -> bool:
            return any(e.user == user.id for e in self.slack.ephemerals[seen:])

        await self.slack.wait_for(arrived, start=mark, timeout=wait)
        ephemeral = next(e for e in self.slack.ephemerals[seen:] if e.user == user.id)
        return Seen(200, ephemeral.text, in_ack=False, blocks=tuple(ephemeral.blocks))


async def eventually(check: Callable[[], T | None], *, timeout: float = 10.0) -> T:  # noqa: ASYNC109
    """Poll `check` until it returns something truthy (what Slack shows settles through
    the outbox, asynchronously); AssertionError after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = check()
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the expected Slack messages did not arrive in time")
        await asyncio.sleep(0.05)
