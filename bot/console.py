"""The terminal console of `platform-bot sandbox`: talk to the real bot as anyone.

It starts the bot on SQLite with the Slack stand-in (`bot.sandbox.sandbox_stack`) and
plays Slack's client: `/platform ...` is sent as a signed slash command by the current
user (`/as bob`) in the current channel (`/in #search`); what the bot shows afterwards
(the acknowledgement, ephemerals, channel messages and their edits, thread replies,
modals) is printed as readable text, buttons numbered so `/click 2` (or just `2`)
presses one. A modal is filled field by field, then submitted.

`--script FILE` plays a transcript without a terminal: each line is echoed, `/expect`
lines check what the bot said, and the first error (a failed expectation, an HTTP
error from the bot, a call Slack refused, a typo in the script) ends the run with one
line and exit status 1.

The rendering functions (`render_mrkdwn`, `render_message`, `render_conversation`,
`render_view`) are pure, so they are tested without a bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.db import OutboxRow, RunRow, utcnow
from bot.sandbox import (
    SANDBOX_ERROR_METRIC,
    SANDBOX_WORKSPACE,
    SandboxStack,
    observability_installed,
    sandbox_stack,
)
from catalog.model import PlatformModel
from sandbox.openbao import find_bao
from sandbox.slack_api import Message, SlackChannel, SlackUser, Workspace
from sandbox.slack_client import BotResponse

BOT_NAME = "platform-bot"
QUIET_S = 0.2
"""The bot has finished answering when nothing is running or queued (a Bolt listener, an
outbox row, a Run) and no Slack call came for this long..."""
SETTLE_LIMIT_S = 10.0
"""...or after this long, whatever it is still doing."""
MAX_WAIT_S = 30.0
DEBUG_ENV = "PLATFORM_BOT_DEBUG"

BENIGN_SLACK_ERRORS = frozenset(
    {
        "ratelimited",  # the outbox waits Retry-After and sends again
        "user_not_found",  # directory lookups that answer "nobody"
        "users_not_found",
        "no_such_subteam",
    }
)
"""Refusals that are a normal answer to a question, not a bug in what the bot sent."""


# --- mrkdwn as readable text -----------------------------------------------------------


@dataclass(frozen=True)
class Names:
    """Display names for Slack ids: users, channels and user groups."""

    users: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)
    groups: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, workspace: Workspace) -> Names:
        users = {u.id: u.name for u in workspace.users}
        users.setdefault(workspace.bot_user_id, BOT_NAME)
        return cls(
            users=users,
            channels={c.id: c.name for c in workspace.channels},
            groups={g.id: g.handle for g in workspace.usergroups},
        )

    def user(self, user_id: str) -> str:
        return self.users.get(user_id, user_id)

    def channel(self, channel_id: str) -> str:
        if channel_id.startswith("D"):
            return "DM"
        return self.channels.get(channel_id, channel_id)


_TOKEN = re.compile(r"<([^<>\n]+)>")


def unescape(text: str) -> str:
    """Slack's three escapes back to the characters they stand for."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_mrkdwn(text: str, names: Names) -> str:
    """mrkdwn as a person reads it: @alice, #payments, "text (url)", no &lt; escapes.

    Emphasis (`*bold*`, `` `code` ``) is kept: it reads well as it is.
    """
    out: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        out.append(unescape(text[position : match.start()]))
        out.append(_render_token(match.group(1), names))
        position = match.end()
    out.append(unescape(text[position:]))
    return "".join(out)


def _render_token(token: str, names: Names) -> str:
    target, _, label = token.partition("|")
    label = unescape(label)
    if target.startswith("@"):
        return "@" + names.users.get(target[1:], label.lstrip("@") or target[1:])
    if target.startswith("#"):
        return "#" + names.channels.get(target[1:], label.lstrip("#") or target[1:])
    if target.startswith("!subteam^"):
        group = target.removeprefix("!subteam^")
        return "@" + names.groups.get(group, label.lstrip("@") or group)
    if target.startswith("!date^"):
        return label or target
    if target.startswith("!"):
        return "@" + (label.lstrip("@") or target[1:])
    url = unescape(target)
    if not label or label == url or "mailto:" + label == url:
        return label or url
    return f"{label} ({url})"


def plain(obj: Any, names: Names) -> str:
    """A text object (plain_text or mrkdwn) as display text; '' for anything else."""
    if isinstance(obj, str):
        return obj
    if not isinstance(obj, dict):
        return ""
    text = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn":
        return render_mrkdwn(text, names)
    return text


# --- Block Kit as lines, buttons numbered ----------------------------------------------


@dataclass(frozen=True)
class Button:
    """Something the console can press: a button, or one option of a menu."""

    number: int
    label: str
    action_id: str
    block_id: str
    element_type: str = "button"
    value: str | None = None
    url: str | None = None
    option: dict[str, Any] | None = None
    """For menus (overflow, static_select): the option this number selects."""
    ts: str = ""
    """The message the button is on ('' for a modal or an acknowledgement)."""


@dataclass(frozen=True)
class Rendered:
    lines: tuple[str, ...] = ()
    buttons: tuple[Button, ...] = ()

    def __add__(self, other: Rendered) -> Rendered:
        return Rendered(self.lines + other.lines, self.buttons + other.buttons)

    def indented(self, prefix: str) -> Rendered:
        return Rendered(tuple(prefix + line if line else line for line in self.lines), self.buttons)

    @property
    def next_button(self) -> int:
        return self.buttons[-1].number + 1 if self.buttons else 1


class _Numberer:
    """Hands out button numbers and keeps what each number presses.

    Unnumbered (someone else's ephemeral), buttons show as `[Label]` and press nothing.
    """

    def __init__(self, first: int, ts: str, *, numbered: bool = True) -> None:
        self.next = first
        self.ts = ts
        self.numbered = numbered
        self.buttons: list[Button] = []

    def _take(self, button: Button) -> str:
        if not self.numbered:
            return f"[{button.label}]"
        self.buttons.append(button)
        self.next += 1
        return f"[{button.number}] {button.label}"

    def add(self, element: dict[str, Any], block_id: str, names: Names) -> str:
        """`[n] Label` for a button; one `[n]` per option for a menu."""
        kind = str(element.get("type", ""))
        action_id = str(element.get("action_id", ""))
        if kind == "button":
            url = element.get("url")
            shown = self._take(
                Button(
                    number=self.next,
                    label=plain(element.get("text"), names),
                    action_id=action_id,
                    block_id=block_id,
                    value=element.get("value"),
                    url=str(url) if url else None,
                    ts=self.ts,
                )
            )
            return shown + (f" ({url})" if url else "")
        if kind in ("overflow", "static_select", "radio_buttons"):
            placeholder = plain(element.get("placeholder"), names)
            parts = [f"{placeholder}:"] if placeholder else []
            for option in _options(element):
                button = Button(
                    number=self.next,
                    label=plain(option.get("text"), names),
                    action_id=action_id,
                    block_id=block_id,
                    element_type=kind,
                    value=option.get("value"),
                    option=option,
                    ts=self.ts,
                )
                parts.append(self._take(button))
            return " ".join(parts)
        if kind == "image":
            return ""
        return f"({kind.replace('_', ' ')}: use Slack)"


def _options(element: dict[str, Any]) -> list[dict[str, Any]]:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    return [o for o in options if isinstance(o, dict)]


def render_message(
    blocks: Sequence[dict[str, Any]] | None,
    text: str,
    names: Names,
    *,
    first_button: int = 1,
    ts: str = "",
    numbered: bool = True,
) -> Rendered:
    """A message as lines of text; its buttons numbered from `first_button`.

    Slack shows the blocks when there are any, the text otherwise (it is the fallback).
    """
    numberer = _Numberer(first_button, ts, numbered=numbered)
    lines: list[str] = []
    if not blocks:
        lines.extend(render_mrkdwn(text, names).splitlines() or [""])
    for block in blocks or []:
        lines.extend(_render_block(block, names, numberer))
    while lines and not lines[-1].strip():
        lines.pop()
    return Rendered(tuple(lines), tuple(numberer.buttons))


def _render_block(block: dict[str, Any], names: Names, numberer: _Numberer) -> list[str]:
    kind = block.get("type")
    block_id = str(block.get("block_id", ""))
    if kind == "header":
        return [f"== {plain(block.get('text'), names)} =="]
    if kind == "divider":
        return ["-----"]
    if kind == "section":
        lines = plain(block.get("text"), names).splitlines() if block.get("text") else []
        for item in block.get("fields") or []:
            lines.append("  ".join(plain(item, names).splitlines()))
        accessory = block.get("accessory")
        if isinstance(accessory, dict):
            shown = numberer.add(accessory, block_id, names)
            if shown:
                lines.append(shown)
        return lines
    if kind == "context":
        parts = []
        for element in block.get("elements") or []:
            if element.get("type") == "image":
                continue
            parts.append(" ".join(plain(element, names).splitlines()))
        shown = " | ".join(p for p in parts if p)
        return [f"({shown})"] if shown else []
    if kind == "actions":
        pressable = [numberer.add(e, block_id, names) for e in block.get("elements") or []]
        return ["  ".join(p for p in pressable if p)]
    if kind == "image":
        title = plain(block.get("title"), names) or str(block.get("alt_text", ""))
        return [f"[image: {title}]"]
    if kind == "rich_text":
        return _rich_text(block.get("elements") or [], names).splitlines()
    if kind == "markdown":
        return str(block.get("text", "")).splitlines()
    if kind == "input":
        label = plain(block.get("label"), names)
        return [f"{label}: (an input field)"]
    return [f"({kind} block)"]


def _rich_text(elements: Sequence[Any], names: Names) -> str:
    out: list[str] = []
    for element in elements:
        if not isinstance(element, dict):
            continue
        kind = element.get("type")
        inner = element.get("elements") or []
        if kind == "rich_text_section":
            out.append(_rich_text(inner, names))
        elif kind == "rich_text_list":
            ordered = element.get("style") == "ordered"
            items = [_rich_text([item], names) for item in inner]
            out.append(
                "\n".join(
                    f"{i}. {item}" if ordered else f"• {item}"
                    for i, item in enumerate(items, start=1)
                )
                + "\n"
            )
        elif kind == "rich_text_preformatted":
            out.append("```\n" + _rich_text(inner, names) + "\n```\n")
        elif kind == "rich_text_quote":
            out.append("> " + _rich_text(inner, names) + "\n")
        elif kind == "text":
            out.append(str(element.get("text", "")))
        elif kind == "link":
            url = str(element.get("url", ""))
            label = str(element.get("text", ""))
            out.append(f"{label} ({url})" if label and label != url else url)
        elif kind == "user":
            out.append("@" + names.user(str(element.get("user_id", ""))))
        elif kind == "channel":
            out.append("#" + names.channel(str(element.get("channel_id", ""))))
        elif kind == "usergroup":
            group = str(element.get("usergroup_id", ""))
            out.append("@" + names.groups.get(group, group))
        elif kind == "emoji":
            out.append(f":{element.get('name', '')}:")
        elif kind == "broadcast":
            out.append(f"@{element.get('range', '')}")
    return "".join(out)


def _first_line(message: Message, names: Names, limit: int = 60) -> str:
    lines = [line.strip() for line in render_message(message.blocks, message.text, names).lines]
    first = next((line.strip("= ") for line in lines if line.strip("=- ")), "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _is_reply(message: Message) -> bool:
    return bool(message.thread_ts and message.thread_ts != message.ts)


def render_conversation(
    messages: Sequence[Message],
    names: Names,
    *,
    first_button: int = 1,
    parents: Mapping[str, Message] | None = None,
    edited: Iterable[str] = (),
    prefix: str = "",
) -> Rendered:
    """Messages in order, each thread's replies indented under their parent.

    A reply whose parent is not among `messages` says which message it answers
    (looked up in `parents` by ts). `edited` holds the ts of messages shown because
    they changed; `prefix` goes before each message's header (e.g. "[#search] ").
    """
    changed = set(edited)
    shown = {m.ts for m in messages}
    replies: dict[str, list[Message]] = {}
    for message in messages:
        if _is_reply(message):
            replies.setdefault(str(message.thread_ts), []).append(message)
    result = Rendered()

    def add(message: Message, header: str, indent: str) -> None:
        nonlocal result
        start = result.buttons[-1].number + 1 if result.buttons else first_button
        body = render_message(
            message.blocks, message.text, names, first_button=start, ts=message.ts
        )
        flag = " (edited)" if message.ts in changed else ""
        result += Rendered((f"{prefix}{header.format(flag=flag)}",)) + body.indented(indent)

    for message in messages:
        author = names.user(message.user)
        if not _is_reply(message):
            add(message, f"{author}{{flag}}:", "  ")
            for child in replies.get(message.ts, []):
                add(child, f"  ↳ {names.user(child.user)}{{flag}}:", "    ")
        elif message.thread_ts not in shown:
            parent = (parents or {}).get(str(message.thread_ts))
            about = f"“{_first_line(parent, names)}”" if parent is not None else "a message"
            add(message, f"{author}{{flag}}, in the thread of {about}:", "    ")
    return result


# --- modals -------------------------------------------------------------------------------

FieldKind = Literal[
    "text", "number", "select", "multi_select", "user", "users", "channel", "channels",
    "checkboxes", "radio", "date", "time", "unsupported",
]  # fmt: skip

_KINDS: dict[str, FieldKind] = {
    "plain_text_input": "text",
    "email_text_input": "text",
    "url_text_input": "text",
    "number_input": "number",
    "static_select": "select",
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
        "radio": {"selected_option": None},
        "multi_select": {"selected_options": []},
        "checkboxes": {"selected_options": []},
        "user": {"selected_user": None},
        "users": {"selected_users": []},
        "date": {"selected_date": None},
        "time": {"selected_time": None},
    }
    return empty.get(item.kind, {})


# --- who is who -----------------------------------------------------------------------


def describe_people(model: PlatformModel, workspace: Workspace) -> list[str]:
    """One line a person: name, teams and roles, as platform.yml and the user groups say."""
    lines = []
    width = max((len(u.name) for u in workspace.users), default=0)
    real_width = max((len(u.real_name) for u in workspace.users), default=0)
    for user in workspace.users:
        if user.is_bot:
            continue
        teams = _teams_of(user, model, workspace)
        roles = []
        platform = model.platform
        if _listed_or_in_group(user, platform.admins, platform.admins_usergroup, workspace):
            roles.append("platform admin")
        approves = [
            p.name
            for p in model.approval_policies
            if set(p.approvers.teams) & set(teams)
            or any(_in_group(user, g, workspace) for g in p.approvers.usergroups)
        ]
        if approves:
            roles.append("approver (" + ", ".join(approves) + ")")
        where = ("team " + ", ".join(teams)) if teams else ("" if roles else "in no team")
        about = "; ".join(x for x in (where, *roles) if x)
        lines.append(f"{user.name:<{width}}  {user.real_name:<{real_width}}  {about}")
    return lines


def _teams_of(user: SlackUser, model: PlatformModel, workspace: Workspace) -> list[str]:
    return [
        name
        for name, team in sorted(model.teams.items())
        if _listed_or_in_group(user, team.members, team.slack_usergroup, workspace)
    ]


def _in_group(user: SlackUser, group_id: str, workspace: Workspace) -> bool:
    return any(g.id == group_id and user.id in g.users for g in workspace.usergroups)


def _listed_or_in_group(
    user: SlackUser, members: Sequence[str], group: str | None, workspace: Workspace
) -> bool:
    listed = {m.lower() for m in members}
    if user.id.lower() in listed or (user.email and user.email.lower() in listed):
        return True
    return group is not None and _in_group(user, group, workspace)


def describe_channels(model: PlatformModel, workspace: Workspace) -> list[str]:
    """One line a channel: whose it is, as platform.yml says."""
    lines = []
    width = max((len(c.name) + 1 for c in workspace.channels), default=0)
    for channel in workspace.channels:
        spellings = {channel.id, "#" + channel.name}
        uses = [f"team {n}" for n, t in sorted(model.teams.items()) if t.slack_channel in spellings]
        if model.platform.audit_channel in spellings:
            uses.append("audit log")
        if model.platform.fallback_channel in spellings:
            uses.append("alerts nobody owns")
        lines.append(f"{'#' + channel.name:<{width}}  {'; '.join(uses)}".rstrip())
    return lines


def home_channel(user: SlackUser, model: PlatformModel, workspace: Workspace) -> SlackChannel:
    """Where someone starts: their team's channel, else the platform's fallback channel."""
    candidates = [model.teams[t].slack_channel for t in _teams_of(user, model, workspace)]
    candidates.append(model.platform.fallback_channel or "")
    for ref in candidates:
        with contextlib.suppress(KeyError):
            return workspace.channel(ref)
    return workspace.channels[0]


# --- the console ----------------------------------------------------------------------

HELP = """\
Console commands (anything else you type goes nowhere):
  /platform <text>     send the slash command as the current user, in the current channel
  /as <user>           become someone else ({people})
  /in #channel         type in another channel
  /show [#channel]     show a channel's messages with their threads
  /click <n>  or  <n>  press button n of the last output
  /wait <seconds>      let long Runs progress (at most 30), then show what changed
  /errors <service> <env> <ratio>   set the error ratio Prometheus watches: above 0.05
                       the sandbox's HighErrorRate alert fires, 0 resolves it
  Enter                show anything new
  /expect <text>       (scripts) the output since the last command must contain text
  /expect-not <text>   (scripts) ...must not contain text
  # comment            ignored
  /help                this list;  /quit (or Ctrl-D) leaves
In a modal: answer each field in turn; pick options by number or name; Enter (or `-`,
in scripts) keeps the default or skips an optional field. /submit presses Submit now,
/cancel closes the modal, and a value that starts with / is typed as \\/value.
Start with `/platform help`."""

CONSOLE_COMMANDS = (
    "/platform",
    "/as",
    "/in",
    "/show",
    "/click",
    "/wait",
    "/errors",
    "/expect",
    "/expect-not",
    "/help",
    "/quit",
    "/exit",
    "/submit",
    "/cancel",
)


class ConsoleError(Exception):
    """Something the person typed cannot be done; one line says why."""


class ScriptFailed(Exception):
    """A transcript went wrong; the message is the one line to print."""


@dataclass
class ButtonRef:
    """A numbered button and where it is on screen."""

    button: Button
    where: Literal["message", "ephemeral", "view"]
    channel: str = ""
    view_id: str = ""


@dataclass
class ModalSession:
    """The modal the current user is filling in."""

    view_id: str
    version: tuple[str, int]
    todo: list[Field]
    answers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class _Seen:
    """What has been shown already, so each action prints only what is new."""

    calls: int = 0
    ephemerals: int = 0
    messages: dict[tuple[str, str], int] = field(default_factory=dict)
    logs: int = 0


class _LogCollector(logging.Handler):
    """The bot's warnings and errors, shown in the console as one line each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class Console:
    """One person's Slack client, in a terminal or a transcript."""

    def __init__(
        self,
        stack: SandboxStack,
        *,
        user: SlackUser,
        channel: SlackChannel,
        scripted: bool,
        logs: _LogCollector,
        write: Callable[[str], None] = print,
    ) -> None:
        self.stack = stack
        self.workspace = stack.workspace
        self.names = Names.of(self.workspace)
        self.user = user
        self.channel = channel
        self.scripted = scripted
        self.logs = logs
        self._write = write
        self.buttons: dict[int, ButtonRef] = {}
        self.modal: ModalSession | None = None
        self.seen = _Seen()
        self.output: list[str] = []
        self.last_command = ""
        self.debug = os.environ.get(DEBUG_ENV) == "1"
        self._numbering = 1
        self._reported: set[int] = set()
        self._answers: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self._catch_up()

    # output

    def say(self, line: str = "") -> None:
        """Print a line of what the bot (or the console) says; /expect looks at these."""
        self._write(line)
        self.output.append(line)

    def problem(self, message: str) -> None:
        """A failure: printed; in a script it ends the run."""
        if self.scripted:
            raise ScriptFailed(message)
        self.say(f"! {message}")

    def prompt(self) -> str:
        if self.modal is not None:
            if self.modal.todo:
                return self.modal.todo[0].prompt()
            return "  (modal) /submit, /cancel or /click n> "
        return f"{self.user.name}@#{self.channel.name}> "

    # input

    def is_comment(self, line: str) -> bool:
        """`# ...`, except `#search` answering a modal's channel field."""
        stripped = line.strip()
        if not stripped.startswith("#"):
            return False
        asking = self.modal.todo[0] if self.modal is not None and self.modal.todo else None
        wants_channel = asking is not None and asking.kind in ("channel", "channels")
        return not (wants_channel and " " not in stripped)

    async def handle(self, line: str) -> bool:
        """Do one line; False when the console should end."""
        stripped = line.strip()
        if self.is_comment(line) or (not stripped and self.scripted):
            return True
        word, _, rest = stripped.partition(" ")
        rest = rest.strip()
        if word in ("/expect", "/expect-not"):
            self._expect(rest, present=word == "/expect")
            return True
        self.output = []
        self.last_command = stripped
        if word in ("/quit", "/exit"):
            return False
        try:
            if self.modal is not None and self.modal.todo and not _is_command(word):
                await self._answer(line)
            else:
                await self._command(word, rest)
        except ConsoleError as exc:
            self.problem(str(exc))
        return True

    async def _command(self, word: str, rest: str) -> None:
        if not word:
            await self._show_new()
        elif word == "/platform":
            await self._slash(rest)
        elif word == "/as":
            self._become(rest)
        elif word == "/in":
            self._move(rest)
        elif word == "/show":
            await self._show_new()
            self._show_channel(rest)
        elif word == "/click":
            await self._click(rest)
        elif word.isdigit() and not rest:
            await self._click(word)
        elif word == "/wait":
            await self._wait(rest)
        elif word == "/errors":
            self._errors(rest)
        elif word == "/help":
            people = ", ".join(u.name for u in self.workspace.users if not u.is_bot)
            for line in HELP.format(people=people).splitlines():
                self.say(line)
        elif word == "/submit":
            await self._submit()
        elif word == "/cancel":
            await self._cancel()
        elif word.startswith("/"):
            close = [c for c in CONSOLE_COMMANDS if c.startswith(word[:3])]
            hint = f" Did you mean {close[0]}?" if close else ""
            if word[1:] in self.stack.bot.door.features.commands.by_name:
                hint = f" Did you mean /platform {word[1:]} {rest}?".replace(" ?", "?")
            raise ConsoleError(f"Unknown console command {word}.{hint} Type /help for the list.")
        else:
            raise ConsoleError(
                "Nothing is listening to plain text here: type `/platform ...`, "
                "a button number, or /help."
            )

    def _become(self, name: str) -> None:
        if not name:
            raise ConsoleError("Usage: /as <user>, e.g. /as bob.")
        if self.modal is not None:
            raise ConsoleError("Finish the modal first (/submit or /cancel).")
        try:
            self.user = self.workspace.user(name)
        except KeyError:
            known = ", ".join(u.name for u in self.workspace.users if not u.is_bot)
            raise ConsoleError(f"There is no user {name!r}; the sandbox has {known}.") from None
        # Channel messages look the same to everyone; ephemerals and modals were theirs.
        self.buttons = {n: b for n, b in self.buttons.items() if b.where == "message"}
        self.say(f"(you are {self.user.name} now, {self.user.real_name})")

    def _move(self, name: str) -> None:
        if not name:
            raise ConsoleError("Usage: /in #channel, e.g. /in #search.")
        self.channel = self._channel(name)
        self.say(f"(you are in #{self.channel.name} now)")

    def _channel(self, name: str) -> SlackChannel:
        try:
            return self.workspace.channel(name)
        except KeyError:
            known = ", ".join("#" + c.name for c in self.workspace.channels)
            raise ConsoleError(f"There is no channel {name!r}; the sandbox has {known}.") from None

    async def _slash(self, text: str) -> None:
        await self._show_new()
        response = await self.stack.sender.slash_command(
            text, user=self.user.id, channel=self.channel.id
        )
        await self._after(response, ack_reply=True)

    def _errors(self, text: str) -> None:
        """Set the gauge the sandbox's alert rule watches (see bot.sandbox)."""
        words = text.split()
        if len(words) != 3:
            raise ConsoleError(
                "Usage: /errors <service> <env> <ratio>, e.g. /errors checkout prod 0.2"
            )
        service, env, raw = words
        try:
            ratio = float(raw)
        except ValueError:
            raise ConsoleError(f"{raw!r} is not a number; a ratio is 0 to 1, e.g. 0.2.") from None
        if not 0 <= ratio <= 1:
            raise ConsoleError("A ratio is 0 to 1, e.g. 0.2 (alerts fire above 0.05).")
        if self.stack.metrics is None:
            raise ConsoleError(
                "Prometheus and Alertmanager are not installed, so the sandbox has no alerts: "
                "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
            )
        self.stack.metrics.set(SANDBOX_ERROR_METRIC, ratio, {"service": service, "env": env})
        state = "fires within a few seconds" if ratio > 0.05 else "resolves within a few seconds"
        self.say(f"(error ratio of {service} in {env} is {ratio:g}: the alert {state}; /wait)")

    async def _wait(self, text: str) -> None:
        try:
            seconds = float(text)
        except ValueError:
            raise ConsoleError("Usage: /wait <seconds>, e.g. /wait 5.") from None
        if not 0 <= seconds <= MAX_WAIT_S:
            raise ConsoleError(f"/wait takes 0 to {MAX_WAIT_S:.0f} seconds.")
        await asyncio.sleep(seconds)
        await self._settle()
        self._render_new()

    async def _show_new(self) -> None:
        """Show what happened while nobody was looking (a Run that went on, say)."""
        if len(self.stack.slack.calls) != self.seen.calls or await self._bot_busy():
            await self._settle()
        self._render_new()

    # clicks

    async def _click(self, text: str) -> None:
        if not text.isdigit():
            raise ConsoleError("Usage: /click <n>, n being a button number shown in [brackets].")
        await self._show_new()
        ref = self.buttons.get(int(text))
        if ref is None:
            shown = ", ".join(str(n) for n in sorted(self.buttons)) or "none right now"
            raise ConsoleError(f"There is no button {text}; buttons shown: {shown}.")
        button = ref.button
        sender = self.stack.sender
        try:
            if ref.where == "ephemeral" or button.option is not None:
                response = await self._click_raw(ref)
            elif ref.where == "view":
                response = await sender.block_actions(
                    user=self.user.id,
                    action_id=button.action_id,
                    block_id=button.block_id,
                    value=button.value,
                    view_id=ref.view_id,
                )
            else:
                response = await sender.block_actions(
                    user=self.user.id,
                    action_id=button.action_id,
                    block_id=button.block_id,
                    value=button.value,
                    channel=ref.channel,
                    message_ts=button.ts,
                )
        except LookupError:  # KeyError too: the message or modal is no more
            raise ConsoleError(
                f"Button {text} ({button.label}) is gone: its message or modal changed."
            ) from None
        await self._after(response)

    async def _click_raw(self, ref: ButtonRef) -> BotResponse:
        """A click Slack's sender has no shortcut for: on an ephemeral, or a menu option."""
        button, standin, ws = ref.button, self.stack.slack, self.workspace
        action: dict[str, Any] = {
            "action_id": button.action_id,
            "block_id": button.block_id,
            "type": button.element_type,
            "action_ts": f"{time.time():.6f}",
        }
        if button.option is not None:
            action["selected_option"] = button.option
        else:
            action["text"] = {"type": "plain_text", "text": button.label, "emoji": True}
            if button.value is not None:
                action["value"] = button.value
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": self.user.id, "username": self.user.name, "team_id": ws.team_id},
            "api_app_id": ws.app_id,
            "token": "sandbox",
            "team": {"id": ws.team_id, "domain": ws.domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "state": {"values": {}},
            "actions": [action],
            "trigger_id": standin.issue_trigger_id(user=self.user.id, view_id=ref.view_id or None),
        }
        if ref.where == "view":
            payload["container"] = {"type": "view", "view_id": ref.view_id}
            payload["view"] = standin.views[ref.view_id].view
        else:
            channel = self.workspace.channel(ref.channel)
            payload["container"] = {
                "type": "message",
                "message_ts": button.ts,
                "channel_id": channel.id,
                "is_ephemeral": ref.where == "ephemeral",
            }
            payload["channel"] = {"id": channel.id, "name": channel.name}
            if ref.where == "message":
                payload["message"] = standin.message(channel.id, button.ts).to_dict()
            payload["response_url"] = standin.new_response_url(
                channel=channel.id, user=self.user.id, message_ts=button.ts or None
            )
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.stack.sender.raw(body, content_type="application/x-www-form-urlencoded")

    # modals

    async def _answer(self, line: str) -> None:
        session = self.modal
        assert session is not None and session.todo
        item = session.todo[0]
        answer = line.strip()
        if answer.startswith("\\/"):
            answer = answer[1:]
        try:
            state = parse_answer(item, answer, self.workspace)
        except AnswerError as exc:
            raise ConsoleError(str(exc)) from None
        session.answers[item.key] = state
        session.todo.pop(0)
        if not session.todo:
            await self._submit()

    async def _submit(self) -> None:
        session = self.modal
        if session is None:
            raise ConsoleError("No modal is open.")
        opened = self.stack.slack.views.get(session.view_id)
        if opened is None:
            self.modal = None
            raise ConsoleError("That modal is closed already.")
        if not opened.view.get("submit"):
            raise ConsoleError("This modal has no Submit button; /cancel closes it.")
        values: dict[str, dict[str, Any]] = {}
        for item in view_fields(opened.view, self.names):
            state = session.answers.get(item.key)
            if state is None:
                try:
                    state = parse_answer(item, "", self.workspace)
                except AnswerError as exc:
                    raise ConsoleError(f"{exc} Answer it before /submit.") from None
            values.setdefault(item.block_id, {})[item.action_id] = state
        session.todo = []
        response = await self.stack.sender.view_submission(
            user=self.user.id, view_id=session.view_id, values=values
        )
        errors = _submission_errors(response)
        if errors:
            fields = {f.block_id: f for f in view_fields(opened.view, self.names)}
            self.say("Slack shows these errors on the modal:")
            for block_id, message in errors.items():
                label = fields[block_id].label if block_id in fields else block_id
                self.say(f"  ! {label}: {render_mrkdwn(message, self.names)}")
            session.todo = [fields[b] for b in errors if b in fields]
            session.errors = errors
            if self.scripted:
                self.say("(answer those fields again)")
        await self._after(response, modal_errors=bool(errors))

    async def _cancel(self) -> None:
        session = self.modal
        if session is None:
            raise ConsoleError("No modal is open.")
        opened = self.stack.slack.views.get(session.view_id)
        self.modal = None
        if opened is None:
            return
        if opened.view.get("notify_on_close"):
            ws = self.workspace
            payload = {
                "type": "view_closed",
                "team": {"id": ws.team_id, "domain": ws.domain},
                "user": {"id": self.user.id, "username": self.user.name, "team_id": ws.team_id},
                "api_app_id": ws.app_id,
                "view": opened.view,
                "is_cleared": False,
            }
            body = urlencode({"payload": json.dumps(payload)}).encode()
            self.stack.slack.close_view(opened.id)
            response = await self.stack.sender.raw(
                body, content_type="application/x-www-form-urlencoded"
            )
            await self._after(response)
        else:
            self.stack.slack.close_view(opened.id)
        self.say(f"(closed the modal “{plain(opened.view.get('title'), self.names)}”)")
        self._sync_modal()

    def _sync_modal(self, *, keep_todo: bool = False) -> None:
        """Follow the current user's top modal: show it when it is new or changed."""
        mine = [v for v in self.stack.slack.views.values() if v.user == self.user.id]
        if not mine:
            if self.modal is not None:
                self.modal = None
                self.say("(the modal closed)")
            return
        top = mine[-1]
        version = (top.id, top.updates)
        if self.modal is not None and self.modal.version == version:
            return
        answers = self._answers.setdefault(top.id, {})  # an update keeps what was typed
        fields = view_fields(top.view, self.names)
        todo = [f for f in fields if f.key not in answers]
        self.modal = ModalSession(view_id=top.id, version=version, todo=todo, answers=answers)
        rendered = render_view(top.view, self.names, first_button=self._numbering)
        self._print(rendered, "view", view_id=top.id)
        if todo:
            self.say("  (answer each field below; /cancel closes the modal)")
        else:
            self.say("  (/submit to submit, /cancel to close)")

    # waiting and showing

    async def _after(
        self, response: BotResponse, *, ack_reply: bool = False, modal_errors: bool = False
    ) -> None:
        """After an action: check the bot's answer, wait for it to finish, show what's new."""
        if response.status != 200:
            body = " ".join(response.body.split())[:200]
            errors = [r for r in self.logs.records[self.seen.logs :] if r.levelno >= logging.ERROR]
            why = [_log_line(r) for r in errors[:1]]
            self._reported.update(id(r) for r in errors[:1])
            self.problem(
                f"the bot answered HTTP {response.status}"
                + (f": {body}" if body else "")
                + (f" ({why[0]})" if why else "")
            )
        elif ack_reply and response.body.strip():
            self._show_ack(response)
        await self._settle()
        self._render_new()
        if not modal_errors:
            self._sync_modal()

    def _show_ack(self, response: BotResponse) -> None:
        try:
            answer = response.json()
        except ValueError:
            answer = {"text": response.body}
        if not isinstance(answer, dict):
            return
        ephemeral = answer.get("response_type", "ephemeral") != "in_channel"
        header = f"{BOT_NAME} (only you):" if ephemeral else f"{BOT_NAME}:"
        rendered = render_message(answer.get("blocks"), str(answer.get("text", "")), self.names)
        shown = Rendered((header,)) + rendered.indented("  ")
        self._print(shown, "ephemeral", channel=self.channel.id)

    async def _settle(self) -> None:
        """Wait until the bot is done: no Slack call for QUIET_S, nothing queued or running."""
        loop = asyncio.get_running_loop()
        calls = self.stack.slack.calls
        start = last_change = loop.time()
        count = len(calls)
        while True:
            await asyncio.sleep(0.05)
            now = loop.time()
            if len(calls) != count:
                count, last_change = len(calls), now
            elif now - last_change >= QUIET_S and not await self._bot_busy():
                return
            if now - start >= SETTLE_LIMIT_S:
                self.say("(the bot is still busy; /wait or press Enter later to see more)")
                return

    async def _bot_busy(self) -> bool:
        """Is a Bolt listener still running, or a message or Run still waiting?"""
        for task in asyncio.all_tasks():
            coro = task.get_coro()
            code = getattr(coro, "cr_code", None)
            if code is not None and "slack_bolt" in code.co_filename and not task.done():
                return True
        return await self.stack.bot.db.run(_work_waiting)

    def _catch_up(self) -> None:
        """Mark everything as seen (e.g. the startup calls)."""
        slack = self.stack.slack
        self.seen.calls = len(slack.calls)
        self.seen.ephemerals = len(slack.ephemerals)
        self.seen.messages = {
            (m.channel, m.ts): m.edits for msgs in slack.messages.values() for m in msgs
        }
        self.seen.logs = len(self.logs.records)

    def _render_new(self) -> None:
        """Print what happened since the last look; report refusals and bot errors."""
        slack = self.stack.slack
        failures = []
        for call in slack.calls[self.seen.calls :]:
            error = str(call.response.get("error", ""))
            if call.ok or error in BENIGN_SLACK_ERRORS:
                continue
            details = [m for m in call.response.get("response_metadata", {}).get("messages", [])]
            failures.append(
                f"Slack refused the bot's {call.method} (HTTP {call.status}): {error or '?'}"
                + (f" — {'; '.join(details)[:300]}" if details else "")
            )
        self.seen.calls = len(slack.calls)

        new_ephemerals = slack.ephemerals[self.seen.ephemerals :]
        self.seen.ephemerals = len(slack.ephemerals)
        for ephemeral in new_ephemerals:
            self._show_ephemeral(ephemeral.user, ephemeral.channel, ephemeral)

        current: dict[tuple[str, str], Message] = {
            (m.channel, m.ts): m for msgs in slack.messages.values() for m in msgs
        }
        fresh: dict[str, list[Message]] = {}
        edited: set[str] = set()
        for key, message in current.items():
            before = self.seen.messages.get(key)
            if before is None or before != message.edits:
                fresh.setdefault(message.channel, []).append(message)
                if before is not None:
                    edited.add(message.ts)
        for key in set(self.seen.messages) - set(current):
            self.say(f"({'#' + self.names.channel(key[0])}: {BOT_NAME} deleted a message)")
        self.seen.messages = {key: m.edits for key, m in current.items()}
        order = sorted(fresh, key=lambda c: (c != self.channel.id, self.names.channel(c)))
        for channel_id in order:
            messages = sorted(fresh[channel_id], key=lambda m: float(m.ts))
            parents = {m.ts: m for m in slack.messages.get(channel_id, [])}
            prefix = (
                "" if channel_id == self.channel.id else f"[#{self.names.channel(channel_id)}] "
            )
            rendered = render_conversation(
                messages,
                self.names,
                first_button=self._numbering,
                parents=parents,
                edited=edited,
                prefix=prefix,
            )
            self._print(rendered, "message", channel=channel_id)

        for record in self.logs.records[self.seen.logs :]:
            if id(record) not in self._reported:
                self._show_log(record)
        self.seen.logs = len(self.logs.records)
        for failure in failures:
            self.problem(failure)

    def _show_ephemeral(self, user: str, channel: str, ephemeral: Any) -> None:
        if ephemeral.delete_original:
            self.say(f"({BOT_NAME} removed its earlier message to @{self.names.user(user)})")
            return
        whom = "only you" if user == self.user.id else f"only @{self.names.user(user)} sees this"
        where = "" if channel == self.channel.id else f"[#{self.names.channel(channel)}] "
        replaces = ", replacing its earlier message" if ephemeral.replace_original else ""
        header = f"{where}{BOT_NAME} ({whom}{replaces}):"
        rendered = render_message(
            ephemeral.blocks,
            ephemeral.text,
            self.names,
            first_button=self._numbering,
            ts=ephemeral.ts,
            numbered=user == self.user.id,  # nobody can press someone else's buttons
        )
        self._print(Rendered((header,)) + rendered.indented("  "), "ephemeral", channel=channel)

    def _show_log(self, record: logging.LogRecord) -> None:
        line = _log_line(record)
        if self.debug and record.exc_info:
            import traceback

            self.say(line)
            for text in traceback.format_exception(*record.exc_info):
                self._write(text.rstrip())
            if record.levelno >= logging.ERROR:
                self.problem(line)
            return
        if record.levelno >= logging.ERROR:
            self.problem(line)
        else:
            self.say(f"({line})")

    def _print(
        self,
        rendered: Rendered,
        where: Literal["message", "ephemeral", "view"],
        *,
        channel: str = "",
        view_id: str = "",
    ) -> None:
        """Print rendered lines; its buttons become the ones /click presses.

        The first buttons of an action's output replace the old ones; output without
        buttons leaves the old numbers working.
        """
        for line in rendered.lines:
            self.say(line)
        if rendered.buttons:
            if self._numbering == 1:
                self.buttons = {}
            for button in rendered.buttons:
                ref = ButtonRef(button, where, channel=channel, view_id=view_id)
                self.buttons[button.number] = ref
            self._numbering = rendered.buttons[-1].number + 1

    def begin_output(self) -> None:
        """A new action: button numbers start again at 1."""
        self._numbering = 1

    def _show_channel(self, name: str) -> None:
        channel = self._channel(name) if name else self.channel
        messages = self.stack.slack.messages.get(channel.id, [])
        self.say(f"#{channel.name}" + ("" if messages else ": no messages yet"))
        if not messages:
            return
        rendered = render_conversation(messages, self.names, first_button=1).indented("  ")
        self.begin_output()
        self._print(rendered, "message", channel=channel.id)

    # /expect

    def _expect(self, text: str, *, present: bool) -> None:
        if not text:
            raise_usage = "/expect <text>" if present else "/expect-not <text>"
            self.problem(f"Usage: {raise_usage}")
            return
        found = _contains("\n".join(self.output), text)
        if found != present:
            what = "is not in" if present else "is in"
            self.problem(f'expected: "{text}" {what} the output of `{self.last_command}`')


def _log_line(record: logging.LogRecord) -> str:
    message = record.getMessage().strip().splitlines()
    first = message[0] if message else ""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        if str(exc) not in first:
            first += f" ({type(exc).__name__}: {exc})"
    return f"bot log {record.levelname} {record.name}: {first}"


def _is_command(word: str) -> bool:
    return word in CONSOLE_COMMANDS or (word.startswith("/") and word not in ("/",))


def _contains(haystack: str, needle: str) -> bool:
    """Case- and spacing-insensitive; `*bold*` and `code` markers may be left out."""

    def squash(s: str) -> str:
        return " ".join(s.casefold().split())

    def bare(s: str) -> str:
        return squash(s.replace("*", "").replace("`", ""))

    return squash(needle) in squash(haystack) or bare(needle) in bare(haystack)


def _submission_errors(response: BotResponse) -> dict[str, str]:
    if response.status != 200:
        return {}
    try:
        answer = response.json()
    except ValueError:
        return {}
    if isinstance(answer, dict) and answer.get("response_action") == "errors":
        errors = answer.get("errors")
        if isinstance(errors, dict):
            return {str(k): str(v) for k, v in errors.items()}
    return {}


def _work_waiting(session: Session) -> bool:
    soon = utcnow() + timedelta(seconds=1)
    outbox = session.scalar(
        select(func.count())
        .select_from(OutboxRow)
        .where(OutboxRow.state.in_(("pending", "sending")), OutboxRow.not_before <= soon)
    )
    runs = session.scalar(
        select(func.count()).select_from(RunRow).where(RunRow.state.in_(("pending", "running")))
    )
    return bool(outbox) or bool(runs)


# --- running it -------------------------------------------------------------------------


def run_console(*, script: Path | None, as_user: str) -> int:
    """`platform-bot sandbox`: 0 when all went well, 1 on an error (in a script: the first)."""
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    try:
        SANDBOX_WORKSPACE.user(as_user)
    except KeyError:
        known = ", ".join(u.name for u in SANDBOX_WORKSPACE.users if not u.is_bot)
        print(
            f"platform-bot sandbox: there is no user {as_user!r}; the sandbox has {known}.",
            file=sys.stderr,
        )
        return 1
    lines: list[str] | None = None
    if script is not None:
        try:
            lines = script.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            print(f"platform-bot sandbox: cannot read {script}: {exc.strerror}", file=sys.stderr)
            return 1
    try:
        return asyncio.run(_main(script=script, lines=lines, as_user=as_user))
    except KeyboardInterrupt:
        print()
        return 130
    except Exception as exc:
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"platform-bot sandbox: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


async def _main(*, script: Path | None, lines: list[str] | None, as_user: str) -> int:
    from bot.bootstrap import StartupError
    from catalog.load import ConfigError

    logs = _LogCollector()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [logs]
    root.setLevel(logging.WARNING)
    try:
        async with sandbox_stack(
            vault=find_bao() is not None,
            observability=observability_installed(),
            rollout_seconds=2.0,
        ) as stack:
            return await _session(stack, script=script, lines=lines, as_user=as_user, logs=logs)
    except (StartupError, ConfigError) as exc:
        print(f"platform-bot sandbox: {exc}", file=sys.stderr)
        return 2
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


async def _session(
    stack: SandboxStack,
    *,
    script: Path | None,
    lines: list[str] | None,
    as_user: str,
    logs: _LogCollector,
) -> int:
    workspace = stack.workspace
    model = stack.bot.door.ports.catalog.model
    user = workspace.user(as_user)
    console = Console(
        stack,
        user=user,
        channel=home_channel(user, model, workspace),
        scripted=lines is not None,
        logs=logs,
    )
    _banner(console, model)
    if lines is None:
        return await _interactive(console)
    name = script.name if script is not None else "script"
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped and not console.is_comment(line):
            prompt = console.prompt()
            print(f"{prompt}{stripped}" if prompt.endswith(" ") else f"{prompt} {stripped}")
        console.begin_output()
        try:
            if not await console.handle(line):
                return 0
        except ScriptFailed as exc:
            print(f"platform-bot sandbox: {name}:{number}: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:
            if console.debug:
                raise
            print(
                f"platform-bot sandbox: {name}:{number}: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 1
    return 0


def _banner(console: Console, model: PlatformModel) -> None:
    workspace = console.workspace
    print("platform-bot sandbox: the real bot on SQLite, talking to a Slack stand-in.")
    print("People:")
    for line in describe_people(model, workspace):
        print("  " + line)
    print("Channels:")
    for line in describe_channels(model, workspace):
        print("  " + line)
    print(
        f"You are {console.user.name} in #{console.channel.name}. "
        "Type /platform help to begin, /help for console commands, /quit to leave."
    )


async def _interactive(console: Console) -> int:
    with contextlib.suppress(ImportError):
        import readline

        words = [*CONSOLE_COMMANDS, *(u.name for u in console.workspace.users)]
        words += ["#" + c.name for c in console.workspace.channels]

        def complete(text: str, state: int) -> str | None:
            matches = [w for w in words if w.startswith(text)]
            return matches[state] if state < len(matches) else None

        readline.set_completer(complete)
        readline.set_completer_delims(" ")
        readline.parse_and_bind("tab: complete")
    while True:
        line = await _read_line(console.prompt())
        if line is None:
            print()
            return 0
        console.begin_output()
        try:
            if not await console.handle(line):
                return 0
        except Exception as exc:  # never a stack trace for a typo
            if console.debug:
                raise
            print(f"! the console failed: {type(exc).__name__}: {exc}")


async def _read_line(prompt: str) -> str | None:
    """input() in a daemon thread: the event loop (and the bot) keep running meanwhile.

    Not asyncio.to_thread: its worker threads are joined at exit, so Ctrl-C would wait
    for someone to press Enter.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def deliver(value: str | None) -> None:
        if not future.done():
            future.set_result(value)

    def read() -> None:
        try:
            value: str | None = input(prompt)
        except (EOFError, KeyboardInterrupt):
            value = None
        with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting
            loop.call_soon_threadsafe(deliver, value)

    threading.Thread(target=read, name="console-input", daemon=True).start()
    return await future


__all__ = [
    "Button",
    "Console",
    "Field",
    "Names",
    "Rendered",
    "describe_people",
    "parse_answer",
    "render_conversation",
    "render_message",
    "render_mrkdwn",
    "render_view",
    "run_console",
]
