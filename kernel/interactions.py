"""What people send us (a click, a submitted form, what they type into a select) and
what we show them (a Reply)."""

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
class OpenModal:
    """The modal a click or an options request came from, as Slack sent it (untrusted)."""

    id: str
    hash: str
    """What views.update is given, so a stale update is refused (`hash_conflict`)."""
    private_metadata: str
    values: dict[str, Any]
    """block_id -> the input's value so far (as in Submission.values)."""


@dataclass(frozen=True)
class Click:
    """Someone pressed a button (or chose in a select). Only `value` comes from the
    message, and it is untrusted."""

    user: SlackUserId
    team: SlackTeamId
    action_id: str
    value: str
    channel: SlackChannelId | None
    message_ts: str | None
    response_url: str | None
    trigger_id: str | None
    modal: OpenModal | None = None
    """Set when the click happened in a modal (e.g. a select with dispatch_action)."""


@dataclass(frozen=True)
class OptionsRequest:
    """Someone opened, or typed into, an external select: Slack asks for its options."""

    user: SlackUserId
    team: SlackTeamId
    action_id: str
    query: str
    """What the person typed so far (empty when the menu just opened)."""
    modal: OpenModal | None = None


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
