"""What people send us (a click, a submitted form) and what we show them (a Reply)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kernel.ids import (
    SlackChannelId,
    SlackTeamId,
    SlackUserId,
)


@dataclass(frozen=True)
class Reply:
    """What a command shows the person who typed it.

    `text` is mrkdwn already escaped by the command; `blocks` are Block Kit dicts.
    Ephemeral replies are seen only by the requester.
    """

    text: str
    blocks: Sequence[dict[str, Any]] = ()
    ephemeral: bool = True


@dataclass(frozen=True)
class Click:
    """Someone pressed a button. Only `value` comes from the message, and it is untrusted."""

    user: SlackUserId
    team: SlackTeamId
    action_id: str
    value: str
    channel: SlackChannelId | None
    message_ts: str | None
    response_url: str | None
    trigger_id: str | None


@dataclass(frozen=True)
class Submission:
    """Someone submitted a modal: its inputs by block id, and our private metadata."""

    user: SlackUserId
    team: SlackTeamId
    callback_id: str
    view_id: str
    private_metadata: str
    values: dict[str, Any]
    """block_id -> the input's value: a string, a list of strings, or None."""
    trigger_id: str | None
