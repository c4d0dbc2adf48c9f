"""Server B for bench/ack.py: a bare Bolt AsyncApp that only acks `/platform`.

The baseline the bot is compared with: the same Bolt version, the same signing secret,
the same aiohttp serving (Bolt's own `AsyncSlackAppServer` routes and its
`slack_bolt.adapter.aiohttp` request/response conversion, run without an access log as
the bot runs), the same single-team authorization (one auth.test, answered by a
`SlackStandIn` in this process, as the bot's is), and a `/platform` listener that does
nothing but ``await ack()``. GET /readyz (added here, answers 200 at once) exists only so
the benchmark can time start-up the same way for both servers.

It imports nothing of the bot, so its start-up time and RSS are Bolt's own: bench/ack.py
passes the sandbox workspace and signing secret on the command line (run by hand
without them, it takes them from `sandbox.app.stack`, which imports the whole bot).

Prints ``READY <port> <response_url>`` once the port is open, then serves until SIGTERM
or SIGINT and exits 0.

    .venv/bin/python bench/serve_bare.py [--port N] [--signing-secret S --workspace JSON]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from aiohttp import web
from slack_bolt.app.async_server import AsyncSlackAppServer
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.standins.slack_api import (
    SlackChannel,
    SlackStandIn,
    SlackUser,
    SlackUserGroup,
    Workspace,
)

USER, CHANNEL = "alice", "platform"


def workspace_from_json(text: str) -> Workspace:
    """The inverse of `json.dumps(dataclasses.asdict(workspace))`."""
    data = json.loads(text)
    return Workspace(
        **{
            **data,
            "users": tuple(SlackUser(**u) for u in data["users"]),
            "usergroups": tuple(
                SlackUserGroup(**{**g, "users": tuple(g["users"])}) for g in data["usergroups"]
            ),
            "channels": tuple(
                SlackChannel(
                    **{**c, "members": None if c["members"] is None else tuple(c["members"])}
                )
                for c in data["channels"]
            ),
        }
    )


async def serve(port: int, workspace: Workspace, signing_secret: str) -> int:
    logging.basicConfig(level=logging.WARNING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    standin = SlackStandIn(workspace)
    await standin.start()
    client = AsyncWebClient(token=workspace.bot_token, base_url=standin.api_url)
    app = AsyncApp(client=client, signing_secret=signing_secret)

    @app.command("/platform")
    async def platform(ack: AsyncAck) -> None:
        await ack()

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    server = AsyncSlackAppServer(port=port, path="/slack/events", app=app, host="127.0.0.1")
    server.web_app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(server.web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    bound_port = runner.addresses[0][1]
    response_url = standin.new_response_url(
        channel=workspace.channel(CHANNEL).id, user=workspace.user(USER).id
    )
    print(f"READY {bound_port} {response_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if client.session is not None:
            await client.session.close()
        await standin.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--signing-secret", help="default: sandbox.app.stack.SIGNING_SECRET")
    parser.add_argument("--workspace", help="JSON; default: sandbox.app.stack.SANDBOX_WORKSPACE")
    args = parser.parse_args()
    if args.signing_secret is None or args.workspace is None:
        from sandbox.app.stack import SANDBOX_WORKSPACE, SIGNING_SECRET

        workspace, secret = SANDBOX_WORKSPACE, SIGNING_SECRET
    else:
        workspace, secret = workspace_from_json(args.workspace), args.signing_secret
    return asyncio.run(serve(args.port, workspace, secret))


if __name__ == "__main__":
    sys.exit(main())
