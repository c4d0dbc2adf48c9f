"""Block Kit, one way: builders on slack_sdk's Block Kit models, with Slack's limits.

Every message and modal the bot shows is built from these, so each limit is applied in
one place and text is cut safely: never inside an `&amp;` entity, never leaving a
broken mention, always with an ellipsis. slack_sdk's models validate the rest (a
block's shape, its ids) when they are turned into the dicts Slack receives.

Limits from Slack's reference (api.slack.com/reference/block-kit): section text 3,000
characters; context element text 2,000 (at most 10 elements); header 150; button text
75 and value 2,000; option text 75 and value 150; action and block ids 255. Inputs and
modals (docs.slack.dev/reference/block-kit/blocks/input-block, .../plain-text-input-element,
.../select-menu-element, api.slack.com/reference/surfaces/views): label and hint 2,000;
placeholder 150; a text input's length 1..3,000; a static select at most 100 options
(a list that can grow is an `external_select`, whose options the bot serves, at most 100
per answer, as people type); a modal's title, submit and close 24, at most 100 blocks,
private_metadata 3,000.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    DividerBlock,
    ExternalDataSelectElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticMultiSelectElement,
    StaticSelectElement,
)
from slack_sdk.models.views import View

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
INPUT_LABEL = 2000
INPUT_HINT = 2000
PLACEHOLDER = 150
TEXT_INPUT = 3000
SELECT_OPTIONS = 100
"""A static select's options, and the options of one answer to an external select."""
VIEW_TITLE = 24
VIEW_BLOCKS = 100
PRIVATE_METADATA = 3000

Block = dict[str, Any]
__all__ = [
    "ButtonElement",
    "actions",
    "button",
    "context",
    "divider",
    "external_select",
    "header",
    "input_block",
    "message_text",
    "modal",
    "option",
    "options_answer",
    "plain",
    "section",
    "static_select",
    "text_input",
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


# -- inputs and modals -------------------------------------------------------------------


def _placeholder(text: str | None) -> PlainTextObject | None:
    return PlainTextObject(text=truncate(text, PLACEHOLDER)) if text else None


def text_input(
    action_id: str,
    *,
    multiline: bool = False,
    max_length: int | None = None,
    initial_value: str | None = None,
    placeholder: str | None = None,
) -> dict[str, Any]:
    """A plain-text input; `max_length` and `initial_value` kept within Slack's 3,000."""
    return PlainTextInputElement(
        action_id=action_id,
        multiline=multiline or None,
        max_length=min(max_length, TEXT_INPUT) if max_length else None,
        initial_value=truncate(initial_value, TEXT_INPUT) if initial_value else None,
        placeholder=_placeholder(placeholder),
    ).to_dict()


def static_select(
    action_id: str,
    options: Sequence[dict[str, Any]],
    *,
    placeholder: str | None = None,
    initial: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A select of a fixed, short list (ValueError past 100: use `external_select`)."""
    if not options or len(options) > SELECT_OPTIONS:
        raise ValueError(
            f"a static select holds 1 to {SELECT_OPTIONS} options, not {len(options)}; "
            "use external_select for a list that can grow"
        )
    return StaticSelectElement(
        action_id=action_id,
        options=list(options),
        placeholder=_placeholder(placeholder),
        initial_option=initial,
    ).to_dict()


def choose_many(
    action_id: str,
    options: Sequence[dict[str, Any]],
    *,
    initial: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Pick several of a short list: checkboxes up to 10 options (all visible at once),
    a multi-select past that (at most 100). `initial` are the ones ticked at first."""
    if not options or len(options) > SELECT_OPTIONS:
        raise ValueError(f"choose_many holds 1 to {SELECT_OPTIONS} options, not {len(options)}")
    if len(options) <= 10:
        return CheckboxesElement(
            action_id=action_id, options=list(options), initial_options=list(initial) or None
        ).to_dict()
    return StaticMultiSelectElement(
        action_id=action_id,
        options=Option.parse_all(list(options)),
        initial_options=Option.parse_all(list(initial)) if initial else None,
    ).to_dict()


def external_select(
    action_id: str,
    *,
    placeholder: str | None = None,
    initial: dict[str, Any] | None = None,
    min_query_length: int = 0,
) -> dict[str, Any]:
    """A select whose options the bot serves as people type (`block_suggestion` to the
    options load URL); with `min_query_length` 0 the list shows as soon as it opens
    (Slack's default waits for 3 characters)."""
    element = ExternalDataSelectElement(
        action_id=action_id,
        placeholder=_placeholder(placeholder),
        min_query_length=min_query_length,
    ).to_dict()
    if initial is not None:
        element["initial_option"] = initial
    return element


def input_block(
    block_id: str,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool = False,
    hint: str | None = None,
    dispatch_action: bool = False,
) -> Block:
    """An input of a modal; `dispatch_action` sends a block_actions as soon as it is used."""
    return InputBlock(
        block_id=block_id,
        label=PlainTextObject(text=truncate(label or " ", INPUT_LABEL), emoji=True),
        element=element,
        hint=PlainTextObject(text=truncate(hint, INPUT_HINT)) if hint else None,
        optional=optional,
        dispatch_action=dispatch_action or None,
    ).to_dict()


def modal(
    callback_id: str,
    title: str,
    blocks: Sequence[Block],
    *,
    submit: str | None = None,
    close: str = "Cancel",
    private_metadata: str = "",
) -> dict[str, Any]:
    """A modal view. More than 100 blocks or metadata over 3,000 is a bug: ValueError."""
    if len(private_metadata) > PRIVATE_METADATA:
        raise ValueError(f"private_metadata longer than {PRIVATE_METADATA} characters")
    if not 0 < len(blocks) <= VIEW_BLOCKS:
        raise ValueError(f"a modal holds 1 to {VIEW_BLOCKS} blocks, not {len(blocks)}")
    return View(
        type="modal",
        callback_id=callback_id,
        title=PlainTextObject(text=truncate(title, VIEW_TITLE), emoji=True),
        submit=PlainTextObject(text=truncate(submit, VIEW_TITLE), emoji=True) if submit else None,
        close=PlainTextObject(text=truncate(close, VIEW_TITLE), emoji=True),
        blocks=list(blocks),
        private_metadata=private_metadata or None,
    ).to_dict()


def options_answer(options: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The answer to an external select's options request: at most 100 options."""
    return {"options": list(options)[:SELECT_OPTIONS]}
