"""The terminal console of `platform-bot-sandbox`: talk to the real bot as anyone.

It starts the bot on SQLite with the Slack stand-in (`sandbox.app.stack.sandbox_stack`) and
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
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from sandbox.app.console.forms import (
    AnswerError,
    ModalSession,
    parse_answer,
    render_view,
    view_fields,
)
from sandbox.app.console.output import (
    ButtonRef,
    Screen,
    _log_line,
    _LogCollector,
    _Seen,
    _submission_errors,
    _work_waiting,
)
from sandbox.app.console.render import (
    Names,
    plain,
    render_mrkdwn,
)
from sandbox.app.stack import (
    SANDBOX_ERROR_METRIC,
    SandboxStack,
)
from sandbox.standins.slack_api import SlackChannel, SlackUser
from sandbox.standins.slack_client import BotResponse

QUIET_S = 0.2
"""The bot has finished answering when nothing is running or queued (a Bolt listener, an
outbox row, a Run) and no Slack call came for this long..."""
SETTLE_LIMIT_S = 10.0
"""...or after this long, whatever it is still doing."""
MAX_WAIT_S = 30.0
DEBUG_ENV = "PLATFORM_BOT_DEBUG"


# --- mrkdwn as readable text -----------------------------------------------------------


# --- Block Kit as lines, buttons numbered ----------------------------------------------


# --- modals -------------------------------------------------------------------------------


# --- who is who -----------------------------------------------------------------------


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


class Console(Screen):
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
        """Set the gauge the sandbox's alert rule watches (see sandbox.app.stack)."""
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


def _is_command(word: str) -> bool:
    return word in CONSOLE_COMMANDS or (word.startswith("/") and word not in ("/",))


def _contains(haystack: str, needle: str) -> bool:
    """Case- and spacing-insensitive; `*bold*` and `code` markers may be left out."""

    def squash(s: str) -> str:
        return " ".join(s.casefold().split())

    def bare(s: str) -> str:
        return squash(s.replace("*", "").replace("`", ""))

    return squash(needle) in squash(haystack) or bare(needle) in bare(haystack)


# --- running it -------------------------------------------------------------------------
