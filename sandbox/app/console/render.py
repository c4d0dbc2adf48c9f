"""What the bot said, as readable text: mrkdwn, messages and their threads, with
buttons numbered so the person can press one. Pure functions, tested without a bot.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.standins.slack_api import Message, Workspace

BOT_NAME = "platform-bot"


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
        shared = tuple(
            f"[file {f.get('name', '')}: {f.get('title', '')}, {f.get('size', 0):,} bytes]"
            for f in message.files
        )
        body = body + Rendered(shared) if shared else body
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
