"""What every `/platform` subcommand is made of: a Command, its context, its arguments.

A command is a `Command` subclass that its feature registers. Its docstring is its help
text: the first line is the summary shown by `/platform help`, the rest is shown by
`/platform help <name>`.
"""

from __future__ import annotations

import inspect
import shlex
from abc import ABC, abstractmethod
from typing import ClassVar

from catalog.load import did_you_mean
from features.kit.context import Context
from kernel.errors import UsageError
from kernel.interactions import Reply
from kernel.mrkdwn import code

_SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
"""Slack clients turn quotes into curly ones; read them as the straight quotes typed."""

MAX_TEXT = 2000
"""Longest command text we read; anything longer is refused with a clear message."""


CommandContext = Context
"""A command's context is the one every feature gets (see features.kit.context)."""


class Arguments:
    """The words after the subcommand, consumed left to right; leftovers are an error."""

    def __init__(self, words: list[str], *, usage: str) -> None:
        self._words = list(words)
        self.usage = usage

    def next(self, name: str) -> str:
        """The next positional argument; a UsageError naming it when missing."""
        word = self.optional()
        if word is None:
            raise UsageError(f"Missing &lt;{name}&gt;.", usage=self.usage)
        return word

    def optional(self) -> str | None:
        for i, word in enumerate(self._words):
            if not word.startswith("--"):
                return self._words.pop(i)
        return None

    def option(self, name: str) -> str | None:
        """`--name value` or `--name=value`, wherever it appears."""
        flag = f"--{name}"
        for i, word in enumerate(self._words):
            if word == flag:
                if i + 1 >= len(self._words):
                    raise UsageError(f"`{flag}` needs a value.", usage=self.usage)
                value = self._words[i + 1]
                del self._words[i : i + 2]
                return value
            if word.startswith(flag + "="):
                del self._words[i]
                return word[len(flag) + 1 :]
        return None

    def flag(self, name: str) -> bool:
        """`--name` alone (no value), wherever it appears; True if it was there."""
        flag = f"--{name}"
        if flag in self._words:
            self._words.remove(flag)
            return True
        return False

    def done(self) -> None:
        """Refuse anything not consumed, so typos never pass silently."""
        if self._words:
            extra = " ".join(code(w[:40]) for w in self._words[:5])
            raise UsageError(f"Unexpected {extra}.", usage=self.usage)


class Command(ABC):
    """A `/platform` subcommand. Subclasses: a docstring, `name`, `usage`, `run`."""

    name: ClassVar[str]
    usage: ClassVar[str] = ""
    """Arguments after the name, e.g. `<service> <env> [<revision>]`."""
    instant: ClassVar[bool] = False
    """True when the reply needs no I/O, so it is sent with the acknowledgement itself."""

    @classmethod
    def summary(cls) -> str:
        return cls.help_text().splitlines()[0]

    @classmethod
    def help_text(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or cls.name)

    @classmethod
    def full_usage(cls) -> str:
        return f"/platform {cls.name} {cls.usage}".rstrip()

    @abstractmethod
    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        """Do the command and say what happened; raise UsageError for bad input."""


_NOT_PLAIN = frozenset("'\"\\\x0b\x0c\x1c\x1d\x1e\x1f")
"""What makes shlex.split differ from str.split on ASCII text: quotes, `\\`, and the
characters str.split takes for whitespace but shlex (" \\t\\r\\n") does not."""


def _split(text: str) -> list[str]:
    """shlex.split (after smart quotes become plain ones), without shlex's per-character
    Python loop when the text has no quoting: `/platform help` is typed far more often
    than `--reason "disk full"`."""
    if text.isascii() and _NOT_PLAIN.isdisjoint(text):
        return text.split()
    return shlex.split(text.translate(_SMART_QUOTES))


class CommandRegistry:
    """Every command by name; finds the one a text names, with did-you-mean."""

    def __init__(self, commands: list[Command] | None = None) -> None:
        self.by_name: dict[str, Command] = {}
        for command in commands or []:
            self.add(command)

    def add(self, command: Command) -> None:
        """Register a command under its name (once: a second one is a start-up error)."""
        if command.name in self.by_name:
            raise RuntimeError(f"command '{command.name}' is registered twice")
        self.by_name = dict(sorted({**self.by_name, command.name: command}.items()))

    def resolve(self, text: str) -> tuple[Command, Arguments]:
        """Split the text into a command and its arguments; UsageError when it can't."""
        if len(text) > MAX_TEXT:
            raise UsageError(
                f"That command is {len(text):,} characters long; commands are at most "
                f"{MAX_TEXT:,}. Type `/platform help` to see what they look like."
            )
        try:
            words = _split(text)
        except ValueError as exc:
            if "escaped" in str(exc):
                raise UsageError("A `\\` at the end escapes nothing; remove it.") from None
            raise UsageError(
                "A quote is not closed. Put quotes around a value with spaces, "
                'like `--reason "disk full"`.'
            ) from None
        if not words:
            words = ["help"]
        name = words[0].lower()
        if not name:
            raise UsageError("Type a command after `/platform`; `/platform help` lists them.")
        command = self.by_name.get(name)
        if command is None:
            hint = did_you_mean(name, self.by_name).replace("'", "`") or "."
            raise UsageError(
                f"There is no command {code(name[:40])}{hint} Type `/platform help` for the list."
            )
        return command, Arguments(words[1:], usage=command.full_usage())
