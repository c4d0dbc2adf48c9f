"""The console's screen: what the bot did since the last look, printed as readable text,
with buttons numbered for /click; the bot's warnings and errors as one line each."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.db import OutboxRow, RunRow, utcnow
from engine.timers import TimerRow
from sandbox.app.console.render import (
    BOT_NAME,
    Button,
    Names,
    Rendered,
    render_conversation,
    render_message,
)
from sandbox.app.stack import (
    SandboxStack,
)
from sandbox.standins.slack_api import Message, SlackChannel, SlackUser
from sandbox.standins.slack_client import BotResponse

BENIGN_SLACK_ERRORS = frozenset(
    {
        "ratelimited",  # the outbox waits Retry-After and sends again
        "user_not_found",  # directory lookups that answer "nobody"
        "users_not_found",
        "no_such_subteam",
    }
)
"""Refusals that are a normal answer to a question, not a bug in what the bot sent."""


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


def _log_line(record: logging.LogRecord) -> str:
    message = record.getMessage().strip().splitlines()
    first = message[0] if message else ""
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        if str(exc) not in first:
            first += f" ({type(exc).__name__}: {exc})"
    return f"bot log {record.levelname} {record.name}: {first}"


class Screen:
    """The output half of the console: everything it prints goes through `say`."""

    stack: SandboxStack
    names: Names
    user: SlackUser
    channel: SlackChannel
    scripted: bool
    logs: _LogCollector
    _write: Callable[[str], None]
    buttons: dict[int, ButtonRef]
    seen: _Seen
    output: list[str]
    debug: bool
    _numbering: int
    _reported: set[int]

    def _channel(self, name: str) -> SlackChannel:
        raise NotImplementedError

    def say(self, line: str = "") -> None:
        """Print a line of what the bot (or the console) says; /expect looks at these."""
        self._write(line)
        self.output.append(line)

    def problem(self, message: str) -> None:
        """A failure: printed; in a script it ends the run."""
        if self.scripted:
            raise ScriptFailed(message)
        self.say(f"! {message}")

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
    # A timer due now is work too (e.g. the Silence form's silence, made after the answer).
    timers = session.scalar(
        select(func.count())
        .select_from(TimerRow)
        .where(TimerRow.state.in_(("pending", "firing")), TimerRow.due_at <= soon)
    )
    return bool(outbox) or bool(runs) or bool(timers)
