"""What every stand-in shares: an aiohttp app served on loopback, on a free port."""

from __future__ import annotations

import ssl
from typing import ClassVar, Self

from aiohttp import web


class LoopbackServer:
    """Start on a free port, stop cleanly, `async with`; subclasses add their routes."""

    service: ClassVar[str] = "stand-in"
    """Named in the error when someone uses the URL before start()."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def ssl_context(self) -> ssl.SSLContext | None:
        """Serve HTTPS with this context (None: plain HTTP); called once per start()."""
        return None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on ``host:port``; port 0 picks a free one."""
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        tls = self.ssl_context()
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
        bound_host, bound_port = runner.addresses[0][:2]
        self._runner = runner
        self._base_url = f"{'https' if tls else 'http'}://{bound_host}:{bound_port}"

    async def before_stop(self) -> None:
        """Subclasses end their own background work here."""

    async def stop(self) -> None:
        await self.before_stop()
        if self._runner is not None:
            server = self._runner.server
            transports = [h.transport for h in server.connections] if server else []
            await self._runner.cleanup()
            self._runner = None
            # a TLS connection's graceful close waits for the client's close_notify, which a
            # pooled client connection never sends: end the socket itself
            for transport in transports:
                if transport is not None:
                    transport.abort()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError(f"the {self.service} is not started; await start() first")
        return self._base_url
