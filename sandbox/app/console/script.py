"""Running the console: interactively in a terminal, or playing a transcript (`--script`)
whose `/expect` lines check what the bot said; the first error ends the run with exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from pathlib import Path

from catalog.model import PlatformModel
from sandbox.app.console.forms import (
    Field,
    parse_answer,
    render_view,
)
from sandbox.app.console.output import ScriptFailed, _LogCollector
from sandbox.app.console.pages import BrowsingConsole
from sandbox.app.console.people import (
    describe_channels,
    describe_people,
    home_channel,
)
from sandbox.app.console.render import (
    Button,
    Names,
    Rendered,
    render_conversation,
    render_message,
    render_mrkdwn,
)
from sandbox.app.console.repl import CONSOLE_COMMANDS, DEBUG_ENV, Console
from sandbox.app.postgres import postgres_reachable
from sandbox.app.stack import (
    SANDBOX_WORKSPACE,
    SandboxStack,
    observability_installed,
    sandbox_stack,
)
from sandbox.standins.openbao import find_bao


def run_console(*, script: Path | None, as_user: str) -> int:
    """`platform-bot-sandbox`: 0 when all went well, 1 on an error (in a script: the first)."""
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
    from app.bootstrap import StartupError
    from catalog.load import ConfigError

    logs = _LogCollector()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers[:] = [logs]
    root.setLevel(logging.WARNING)
    try:
        async with sandbox_stack(
            vault=find_bao() is not None,
            postgres=postgres_reachable(),
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
    console = BrowsingConsole(
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
