"""Server A for bench/ack.py: the real bot, through its real HTTP stack, on the sandbox.

`sandbox.app.stack.sandbox_stack()` starts the Slack stand-in and the whole bot (aiohttp
server, Bolt app, middleware, Run worker, outbox) on SQLite in a temporary directory,
exactly as `platform-bot-sandbox` and the e2e tests do. Logging is at WARNING, in the
bot's own JSON format, so log lines do not dominate the measurement.

Prints one line, ``READY <port> <response_url>``, once the HTTP port is open
(`sandbox_stack` binds a free port of its own choosing, so the port is read from that
line), then serves until SIGTERM or SIGINT and shuts down cleanly (exit status 0).

    .venv/bin/python bench/serve_bot.py
"""

from __future__ import annotations

import asyncio
import signal
import sys

from app.bootstrap import freeze_heap
from engine.logs import configure_logging
from sandbox.app.stack import SANDBOX_WORKSPACE, sandbox_stack

USER, CHANNEL = "alice", "platform"
"""Who types `/platform help`, and where (from SANDBOX_WORKSPACE)."""


async def serve() -> int:
    configure_logging("WARNING", "json")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with sandbox_stack() as stack:
        response_url = stack.slack.new_response_url(
            channel=SANDBOX_WORKSPACE.channel(CHANNEL).id,
            user=SANDBOX_WORKSPACE.user(USER).id,
        )
        freeze_heap()  # as `platform-bot serve` does once started
        print(f"READY {stack.bot.port} {response_url}", flush=True)
        await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(serve()))
