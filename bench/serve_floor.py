"""Server C for bench/ack.py: the floor, a plain aiohttp handler that verifies and acks.

No framework: read the body, check Slack's signature (`slack_sdk.signature`, the same
HMAC the bot and Bolt compute), answer 200 with an empty body. No Bolt, no parsing, no
database. Nothing can acknowledge a signed request on aiohttp much faster, so the bot's
throughput as a fraction of this one says how much of the machine the bot leaves unused.

Prints ``READY <port> -`` once the port is open, serves until SIGTERM or SIGINT, exits 0.

    .venv/bin/python bench/serve_floor.py --signing-secret S [--port N]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web
from slack_sdk.signature import SignatureVerifier


async def serve(port: int, signing_secret: str) -> int:
    verifier = SignatureVerifier(signing_secret)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        if not verifier.is_valid(
            body=body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
        ):
            return web.Response(status=401)
        return web.Response(status=200)

    async def readyz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"READY {runner.addresses[0][1]} -", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--signing-secret", required=True)
    args = parser.parse_args()
    return asyncio.run(serve(args.port, args.signing_secret))


if __name__ == "__main__":
    sys.exit(main())
