"""Modals in a terminal: a view's fields, shown one at a time, and the person's answers
turned into the `view.state.values` Slack would send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox.app.console.render import (
    Names,
    Rendered,
    _Numberer,
    _options,
    _render_block,
    plain,
)
from sandbox.standins.slack_api import Workspace
from sandbox.standins.slack_client import SlackSender

FieldKind = Literal[
    "text", "number", "select", "multi_select", "user", "users", "channel", "channels",
    "checkboxes", "radio", "date", "time", "search", "unsupported",
]  # fmt: skip


_KINDS: dict[str, FieldKind] = {
    "plain_text_input": "text",
    "email_text_input": "text",
    "url_text_input": "text",
    "number_input": "number",
    "static_select": "select",
    "external_select": "search",
    "multi_static_select": "multi_select",
    "users_select": "user",
    "multi_users_select": "users",
    "conversations_select": "channel",
    "channels_select": "channel",
    "multi_conversations_select": "channels",
    "multi_channels_select": "channels",
    "checkboxes": "checkboxes",
    "radio_buttons": "radio",
    "datepicker": "date",
    "timepicker": "time",
}


@dataclass(frozen=True)
class Field:
    """One input block of a modal, as the console asks for it."""

    block_id: str
    action_id: str
    label: str
    element: dict[str, Any]
    optional: bool
    hint: str = ""
    dispatch: bool = False
    """The input block has dispatch_action: answering it tells the bot at once."""

    @property
    def type(self) -> str:
        return str(self.element.get("type", ""))

    @property
    def kind(self) -> FieldKind:
        return _KINDS.get(self.type, "unsupported")

    @property
    def key(self) -> tuple[str, str]:
        return (self.block_id, self.action_id)

    @property
    def options(self) -> list[dict[str, Any]]:
        return _options(self.element)

    def prompt(self) -> str:
        star = "" if self.optional else "*"
        count = len(self.options)
        if self.kind in ("select", "radio"):
            return f"  {self.label}{star} (1-{count}): "
        if self.kind in ("multi_select", "checkboxes"):
            return f"  {self.label}{star} (numbers from 1-{count}, comma-separated): "
        if self.kind == "user":
            return f"  {self.label}{star} (a user, e.g. bob): "
        if self.kind == "users":
            return f"  {self.label}{star} (users, comma-separated): "
        if self.kind in ("channel", "channels"):
            return f"  {self.label}{star} (#channel{', ...' if self.kind == 'channels' else ''}): "
        if self.kind == "date":
            return f"  {self.label}{star} (YYYY-MM-DD): "
        if self.kind == "time":
            return f"  {self.label}{star} (HH:MM): "
        if self.kind == "search":
            return f"  {self.label}{star} (type to search): "
        return f"  {self.label}{star}: "


def view_fields(view: Mapping[str, Any], names: Names) -> list[Field]:
    fields = []
    for block in view.get("blocks") or []:
        if block.get("type") != "input" or not isinstance(block.get("element"), dict):
            continue
        element = block["element"]
        fields.append(
            Field(
                block_id=str(block.get("block_id", "")),
                action_id=str(element.get("action_id", "")),
                label=plain(block.get("label"), names),
                element=element,
                optional=bool(block.get("optional", False)),
                hint=plain(block.get("hint"), names),
                dispatch=block.get("dispatch_action") is True,
            )
        )
    return fields


def render_view(view: Mapping[str, Any], names: Names, *, first_button: int = 1) -> Rendered:
    """A modal: its title and buttons, its text, its fields (with their choices)."""
    title = plain(view.get("title"), names)
    actions = [
        f"{word}: {plain(view.get(key), names)}"
        for key, word in (("submit", "Submit"), ("close", "Close"))
        if view.get(key)
    ]
    head = f"Modal “{title}”" + (f" ({' · '.join(actions)})" if actions else "")
    numberer = _Numberer(first_button, "")
    lines = [head]
    for block in view.get("blocks") or []:
        if block.get("type") == "input" and isinstance(block.get("element"), dict):
            (item,) = view_fields({"blocks": [block]}, names)
            lines.extend("  " + line for line in _field_lines(item, names))
        else:
            lines.extend("  " + line for line in _render_block(block, names, numberer))
    return Rendered(tuple(lines), tuple(numberer.buttons))


def _field_lines(item: Field, names: Names) -> list[str]:
    star = "" if item.optional else "*"
    describe = {
        "text": "text",
        "number": "a number",
        "user": "a user",
        "users": "users",
        "channel": "a channel",
        "channels": "channels",
        "date": "a date",
        "time": "a time",
        "search": "type to search, then pick one",
        "unsupported": f"{item.type}, which the console cannot fill",
    }
    kind = describe.get(item.kind, "pick " + ("one" if item.kind in ("select", "radio") else "any"))
    lines = [f"{item.label}{star} — {kind}" + (f" ({item.hint})" if item.hint else "")]
    if item.options:
        choices = [f"{i}) {plain(o.get('text'), names)}" for i, o in enumerate(item.options, 1)]
        lines.append("    " + "  ".join(choices))
    initial = _initial_text(item, names)
    if initial:
        lines.append(f"    default: {initial}")
    return lines


def _initial_text(item: Field, names: Names) -> str:
    element = item.element
    if element.get("initial_value") not in (None, ""):
        return str(element["initial_value"])
    if isinstance(element.get("initial_option"), dict):
        return plain(element["initial_option"].get("text"), names)
    if element.get("initial_options"):
        return ", ".join(plain(o.get("text"), names) for o in element["initial_options"])
    for key in ("initial_user", "initial_conversation", "initial_channel"):
        if element.get(key):
            return str(element[key])
    for key in ("initial_date", "initial_time"):
        if element.get(key):
            return str(element[key])
    return ""


class AnswerError(ValueError):
    """An answer the field cannot take; the message says what it wants instead."""


def parse_answer(item: Field, answer: str, workspace: Workspace) -> dict[str, Any]:
    """The view state Slack would send for this answer to this field.

    An empty answer, or `-` (scripts skip blank lines), keeps the field's initial value
    or leaves an optional field empty.
    """
    answer = answer.strip()
    kind, element = item.kind, item.element
    state: dict[str, Any] = {"type": item.type}
    if kind == "unsupported":
        raise AnswerError(f"The console cannot fill a {item.type}; use Slack for this one.")
    if kind == "search" and answer not in ("", "-"):
        raise AnswerError(f"{item.label} is searched: the bot is asked for its options.")
    if answer in ("", "-"):
        initial = _initial_state(item)
        if initial is not None:
            return {**state, **initial}
        if not item.optional:
            raise AnswerError(f"{item.label} is required.")
        return {**state, **_empty_state(item)}
    if kind == "text":
        if element.get("multiline"):
            answer = answer.replace("\\n", "\n")
        for key, word in (("min_length", "at least"), ("max_length", "at most")):
            limit = element.get(key)
            if not isinstance(limit, int):
                continue
            if (len(answer) < limit) if key == "min_length" else (len(answer) > limit):
                raise AnswerError(f"{item.label} takes {word} {limit} characters.")
        return {**state, "value": answer}
    if kind == "number":
        try:
            number = float(answer) if element.get("is_decimal_allowed") else int(answer)
        except ValueError:
            raise AnswerError(f"{item.label} takes a number.") from None
        return {**state, "value": str(number)}
    if kind in ("select", "radio"):
        return {**state, "selected_option": _pick(item, answer)}
    if kind in ("multi_select", "checkboxes"):
        picked = [_pick(item, word) for word in answer.split(",") if word.strip()]
        return {**state, "selected_options": picked}
    if kind in ("user", "users"):
        try:
            ids = [workspace.user(word.strip()).id for word in answer.split(",") if word.strip()]
        except KeyError:
            known = ", ".join(u.name for u in workspace.users)
            raise AnswerError(f"Who is that? The sandbox has {known}.") from None
        if kind == "user":
            if len(ids) != 1:
                raise AnswerError(f"{item.label} takes one user.")
            return {**state, "selected_user": ids[0]}
        return {**state, "selected_users": ids}
    if kind in ("channel", "channels"):
        try:
            ids = [workspace.channel(w.strip()).id for w in answer.split(",") if w.strip()]
        except KeyError:
            known = ", ".join("#" + c.name for c in workspace.channels)
            raise AnswerError(f"Which channel is that? The sandbox has {known}.") from None
        single = "selected_conversation" if "conversations" in item.type else "selected_channel"
        if kind == "channel":
            if len(ids) != 1:
                raise AnswerError(f"{item.label} takes one channel.")
            return {**state, single: ids[0]}
        return {**state, single + "s": ids}
    if kind == "date":
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", answer):
            raise AnswerError(f"{item.label} takes a date like 2025-01-31.")
        return {**state, "selected_date": answer}
    if not re.fullmatch(r"\d{1,2}:\d{2}", answer):
        raise AnswerError(f"{item.label} takes a time like 09:30.")
    return {**state, "selected_time": answer.zfill(5)}


def _pick(item: Field, answer: str) -> dict[str, Any]:
    options = item.options
    word = answer.strip()
    if word.isdigit() and 1 <= int(word) <= len(options):
        return options[int(word) - 1]
    for option in options:
        if word.casefold() in (str(option.get("value", "")).casefold(), _option_text(option)):
            return option
    raise AnswerError(f"Pick a number from 1 to {len(options)} for {item.label}.")


def _option_text(option: dict[str, Any]) -> str:
    text = option.get("text")
    return str(text.get("text", "") if isinstance(text, dict) else text).casefold()


def _initial_state(item: Field) -> dict[str, Any] | None:
    element = item.element
    pairs = {
        "initial_value": "value",
        "initial_option": "selected_option",
        "initial_options": "selected_options",
        "initial_user": "selected_user",
        "initial_users": "selected_users",
        "initial_conversation": "selected_conversation",
        "initial_conversations": "selected_conversations",
        "initial_channel": "selected_channel",
        "initial_channels": "selected_channels",
        "initial_date": "selected_date",
        "initial_time": "selected_time",
    }
    for initial, selected in pairs.items():
        if element.get(initial) not in (None, "", []):
            return {selected: element[initial]}
    return None


def _empty_state(item: Field) -> dict[str, Any]:
    if item.kind in ("channel", "channels"):
        key = "selected_conversation" if "conversations" in item.type else "selected_channel"
        return {key: None} if item.kind == "channel" else {key + "s": []}
    empty: dict[FieldKind, dict[str, Any]] = {
        "text": {"value": None},
        "number": {"value": None},
        "select": {"selected_option": None},
        "search": {"selected_option": None},
        "radio": {"selected_option": None},
        "multi_select": {"selected_options": []},
        "checkboxes": {"selected_options": []},
        "user": {"selected_user": None},
        "users": {"selected_users": []},
        "date": {"selected_date": None},
        "time": {"selected_time": None},
    }
    return empty.get(item.kind, {})


@dataclass
class ModalSession:
    """The modal the current user is filling in."""

    view_id: str
    version: tuple[str, int]
    todo: list[Field]
    answers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


async def search(
    sender: SlackSender, item: Field, answer: str, user: str, view_id: str
) -> dict[str, Any]:
    """The state of a searched field (an external select) for an answer: Slack asks the
    bot for the options matching it, and the answer picks one of them."""
    suggested = await sender.block_suggestion(
        user=user, action_id=item.action_id, block_id=item.block_id, value=answer, view_id=view_id
    )
    return {"type": item.type, "selected_option": pick_suggestion(item, answer, suggested.options)}


def pick_suggestion(item: Field, answer: str, options: list[dict[str, Any]]) -> dict[str, Any]:
    """The option an answer to a searched field means: the one whose value or label is
    the answer, or the only one the bot offered for it; AnswerError says what to type."""
    word = answer.strip().casefold()
    exact = [o for o in options if word in (str(o.get("value", "")).casefold(), _option_text(o))]
    if exact:
        return exact[0]
    if len(options) == 1:
        return options[0]
    if not options:
        raise AnswerError(f"Nothing matches “{answer}” for {item.label}; type part of a name.")
    shown = ", ".join(str(o.get("value")) for o in options[:10])
    more = f" and {len(options) - 10} more" if len(options) > 10 else ""
    raise AnswerError(f"Which one? {shown}{more}. Type one of them.")
