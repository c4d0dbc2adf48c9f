"""`/platform help`: the list of commands, or one command's help, from their docstrings."""

from __future__ import annotations

import functools

import commands
from bot.domain import Reply, UsageError
from bot.mrkdwn import code, escape
from catalog.load import did_you_mean
from commands.base import Arguments, Command, CommandContext


class Help(Command):
    """Show what you can do with /platform, or how to use one command.

    `/platform help` lists every command; `/platform help rollback` explains one.
    """

    name = "help"
    usage = "[command]"
    instant = True

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        wanted = args.optional()
        args.done()
        registry = commands.registry().by_name
        if wanted is None:
            return Reply(text=overview())
        command = registry.get(wanted.lower())
        if command is None:
            hint = did_you_mean(wanted.lower(), registry).replace("'", "`") or "."
            raise UsageError(
                f"There is no command {code(wanted[:40])}{hint} Type `/platform help` for the list."
            )
        return Reply(text=f"*`{escape(command.full_usage())}`*\n{escape(command.help_text())}")


@functools.cache
def overview() -> str:
    """The list of commands; rendered once, since commands do not change at run time."""
    lines = [
        f"`{escape(c.full_usage())}`\n    {c.summary()}"
        for c in commands.registry().by_name.values()
    ]
    text = "*Things you can do with /platform*\n" + "\n".join(lines)
    return text + "\nType `/platform help &lt;command&gt;` for more about one."
