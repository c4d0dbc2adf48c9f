"""Block Kit, one way: builders on slack_sdk's Block Kit models, with Slack's limits.

Every message and modal the bot shows is built from these, so each limit is applied in
one place and text is cut safely: never inside an `&amp;` entity, never leaving a
broken mention, always with an ellipsis. slack_sdk's models validate the rest (a
block's shape, its ids) when they are turned into the dicts Slack receives.

Limits from Slack's reference (api.slack.com/reference/block-kit): section text 3,000
characters; context element text 2,000 (at most 10 elements); header 150; button text
75 and value 2,000; option text 75 and value 150; action and block ids 255.
"""

from __future__ import annotations

from typing import Any, Literal

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    PlainTextObject,
    SectionBlock,
)

from kernel.mrkdwn import truncate

SECTION_TEXT = 3000
CONTEXT_TEXT = 2000
CONTEXT_ELEMENTS = 10
HEADER_TEXT = 150
BUTTON_TEXT = 75
BUTTON_VALUE = 2000
OPTION_TEXT = 75
OPTION_VALUE = 150
ACTION_ID = 255
MESSAGE_TEXT = 40000
"""chat.postMessage's `text` (Slack truncates longer ones; we cut first, safely)."""

Block = dict[str, Any]
__all__ = [
    "ButtonElement",
    "actions",
    "button",
    "context",
    "divider",
    "header",
    "message_text",
    "option",
    "plain",
    "section",
]
Style = Literal["primary", "danger"]


def section(text: str, *, block_id: str | None = None) -> Block:
    """A section of mrkdwn (already escaped where it carries user text)."""
    block = SectionBlock(
        text=MarkdownTextObject(text=truncate(text or " ", SECTION_TEXT)), block_id=block_id
    )
    return block.to_dict()


def context(*texts: str) -> Block:
    """Small grey lines of mrkdwn under a message (at most ten)."""
    elements = [
        MarkdownTextObject(text=truncate(text or " ", CONTEXT_TEXT))
        for text in texts[:CONTEXT_ELEMENTS]
    ]
    return ContextBlock(elements=elements).to_dict()


def header(text: str) -> Block:
    return HeaderBlock(text=PlainTextObject(text=truncate(text, HEADER_TEXT))).to_dict()


def divider() -> Block:
    return DividerBlock().to_dict()


def button(
    action_id: str,
    label: str,
    *,
    value: str = "",
    style: Style | None = None,
    url: str | None = None,
) -> ButtonElement:
    """A button; its value is the only thing a click carries back (and is untrusted)."""
    if len(action_id) > ACTION_ID:
        raise ValueError(f"action id longer than {ACTION_ID}: {action_id[:40]}…")
    if len(value) > BUTTON_VALUE:
        raise ValueError(f"button value longer than {BUTTON_VALUE} characters")
    return ButtonElement(
        action_id=action_id,
        text=PlainTextObject(text=truncate(label, BUTTON_TEXT), emoji=True),
        value=value or None,
        style=style,
        url=url,
    )


def actions(*buttons: ButtonElement, block_id: str | None = None) -> Block:
    """A row of buttons."""
    return ActionsBlock(elements=list(buttons), block_id=block_id).to_dict()


def option(label: str, value: str) -> dict[str, Any]:
    """An option of a select or of radio buttons."""
    if len(value) > OPTION_VALUE:
        raise ValueError(f"option value longer than {OPTION_VALUE} characters")
    return Option(text=PlainTextObject(text=truncate(label, OPTION_TEXT)), value=value).to_dict()


def plain(text: str, limit: int = SECTION_TEXT) -> dict[str, Any]:
    """A plain_text object (labels, titles, placeholders), cut to `limit`."""
    return PlainTextObject(text=truncate(text or " ", limit), emoji=True).to_dict()


def message_text(text: str) -> str:
    """A message's `text` (the notification and fallback), cut safely to Slack's limit."""
    return truncate(text, MESSAGE_TEXT)
