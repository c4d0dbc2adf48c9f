"""The sandbox console: Slack's client in a terminal, talking to the real bot.

render   what the bot said, as text (pure functions)
forms    modals, field by field
people   who is who in the sandbox workspace
output   the screen: new messages, ephemerals, logs; numbered buttons
repl     the console's commands (/platform, /as, /in, /click, /expect, ...)
script   interactive, or a transcript with /expect lines (exit 1 on any error)
"""

from sandbox.app.console.script import run_console

__all__ = ["run_console"]
