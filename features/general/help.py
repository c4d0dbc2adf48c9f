"""`/platform help`: the list of commands, or one command's help, from their docstrings."""

from __future__ import annotations

from catalog.load import did_you_mean
from features.kit.commands import Arguments, Command, CommandContext, CommandRegistry
from kernel.errors import UsageError
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape


class Help(Command):
    """Show what you can do with /platform, or how to use one command.

    `/platform help` lists every command; `/platform help rollback` explains one.
    """

    name = "help"
    usage = "[command]"
    instant = True

    def __init__(self, commands: CommandRegistry) -> None:
        self.commands = commands
        self._overview: str | None = None

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        wanted = args.optional()
        args.done()
        registry = self.commands.by_name
        if wanted is None:
            return Reply(text=self.overview())
        command = registry.get(wanted.lower())
        if command is None:
            hint = did_you_mean(wanted.lower(), registry).replace("'", "`") or "."
            raise UsageError(
                f"There is no command {code(wanted[:40])}{hint} Type `/platform help` for the list."
            )
        return Reply(text=f"*`{escape(command.full_usage())}`*\n{escape(command.help_text())}")

    def overview(self) -> str:
        """The list of commands; rendered once, since commands do not change at run time."""
        if self._overview is None:
            lines = [
                f"`{escape(c.full_usage())}`\n    {c.summary()}"
                for c in self.commands.by_name.values()
            ]
            text = "*Things you can do with /platform*\n" + "\n".join(lines)
            self._overview = text + "\nType `/platform help &lt;command&gt;` for more about one."
        return self._overview
