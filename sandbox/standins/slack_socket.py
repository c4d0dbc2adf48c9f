"""Slack's side of Socket Mode, served by the Slack stand-in.

An app in Socket Mode calls ``apps.connections.open`` with its app-level token, gets a
one-time WebSocket URL, and connects. Slack then greets it with a ``hello`` message and
sends every slash command, interaction and event as an *envelope*; the app must
acknowledge each one by sending back ``{"envelope_id": ..., "payload": ...}``.

This module plays Slack: it greets, delivers envelopes and waits for the acks, so a test
can assert what the bot answered. The shapes match what ``slack_sdk``'s
``SocketModeClient`` reads (``slack_sdk/socket_mode/request.py`` and ``response.py``).

Sources:
- https://api.slack.com/apis/socket-mode (envelopes, acks, ``hello`` and ``disconnect``)
- https://api.slack.com/apis/connections/socket-implement (connecting without an SDK)
- https://docs.slack.dev/reference/methods/apps.connections.open (app-level token, URL)
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web


class SocketModeError(RuntimeError):
    """No Socket Mode client is connected, or it did not acknowledge an envelope in time."""


class SocketModeHub:
    """Accepts Socket Mode connections and delivers envelopes to them."""

    def __init__(self, *, app_id: str) -> None:
        self._app_id = app_id
        self._tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._connected = asyncio.Event()
        self.envelopes: list[dict[str, Any]] = []
        """Every envelope sent to a client, in order."""
        self.acks: list[dict[str, Any]] = []
        """Every message a client sent back, in order."""

    @property
    def connections(self) -> int:
        """How many clients are connected right now."""
        return len(self._sockets)

    def issue_ticket(self) -> str:
        """A one-time ticket for the WebSocket URL that ``apps.connections.open`` returns."""
        ticket = secrets.token_urlsafe(16)
        self._tickets.add(ticket)
        return ticket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket endpoint: check the ticket, say hello, then collect acks."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid or used ticket")
        self._tickets.discard(ticket)
        # autoping answers the client's pings, which is how slack_sdk checks the link.
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json(self._hello())
        self._connected.set()
        try:
            async for frame in socket:
                if frame.type == WSMsgType.TEXT:
                    self._on_text(frame.data)
        finally:
            self._sockets.remove(socket)
            if not self._sockets:
                self._connected.clear()
        return socket

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {
                "host": "applink-standin",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self._app_id},
        }

    def _on_text(self, data: str) -> None:
        try:
            ack = json.loads(data)
        except ValueError:
            return
        if not isinstance(ack, dict):
            return
        self.acks.append(ack)
        waiter = self._waiting.pop(str(ack.get("envelope_id")), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)

    async def deliver(
        self,
        *,
        type: str,
        payload: dict[str, Any],
        accepts_response_payload: bool = True,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 3.0,  # noqa: ASYNC109 - how long Slack waits for the ack
    ) -> dict[str, Any]:
        """Send one envelope to the newest connection and return the client's ack."""
        if not self._sockets:
            raise SocketModeError(
                "no Socket Mode client is connected; start one and await "
                "wait_for_socket_connection() first"
            )
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[envelope_id] = waiter
        self.envelopes.append(envelope)
        try:
            await self._sockets[-1].send_json(envelope)
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise SocketModeError(
                f"the client did not acknowledge envelope {envelope_id} ({type}) "
                f"within {timeout} s; Slack would retry or show the user an error"
            ) from None
        finally:
            self._waiting.pop(envelope_id, None)

    async def wait_for_connection(self, timeout: float = 3.0) -> None:  # noqa: ASYNC109
        """Return once a client has connected and been greeted."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            raise SocketModeError(f"no Socket Mode client connected within {timeout} s") from None

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask every client to reconnect, as Slack does before it recycles a connection."""
        message = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-standin"},
        }
        for socket in list(self._sockets):
            await socket.send_json(message)

    async def close(self) -> None:
        """Close every connection (the stand-in is stopping)."""
        for socket in list(self._sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"stand-in stopping")
