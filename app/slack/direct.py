"""Acknowledge the moment a handler acks: commands, clicks, form submissions and options.

Bolt (process_before_response=False) runs a listener in a task and polls for its ack
with `asyncio.sleep(0.01)` (slack_bolt/listener/asyncio_runner.py), so every request
waits up to 10 ms after the handler acked, and a busy server spends its time in those
wake-ups. Here the same handlers of `SlackFrontDoor` run in a task of their own and the
HTTP answer is sent the moment they call `ack()`: the ack resolves a future, nothing polls.

What Bolt would have done before the handler, done here the same way:
- the signature was verified and the body parsed and checked by `app.slack.intake`
  (Bolt's own second check of the signature is skipped: it would repeat the same HMAC);
- the request id was set by the HTTP server (`app.http.with_request_id`);
- clicks, forms and options from another workspace are refused as `OnlyOurWorkspace`
  refuses them (the command explains a wrong workspace itself, in words);
- the matching is Bolt's: `/platform` by the command's name, a click by the first action's
  `action_id`, a form by its view's `callback_id`, options by `action_id` (all non-empty).

Everything else (Events API deliveries with their dedupe, url_verification, ssl_check,
shortcuts, view_closed, other commands) returns None here and goes through Bolt as before.
No database round trip happens here: what a handler needs, it does after its ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond
from slack_bolt.response import BoltResponse

from app.slack.front_door import SlackFrontDoor
from app.slack.middleware.workspace import refuse_other_workspace

log = logging.getLogger(__name__)

Handler = Callable[["_Ack", dict[str, Any]], Awaitable[None]]


class _Ack(AsyncAck):
    """Bolt's ack (the same response bodies), which also resolves the request's future."""

    def __init__(self, answered: asyncio.Future[BoltResponse]) -> None:
        self.response = None  # what AsyncAck.__init__ does (untyped there)
        self.answered = answered

    async def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:
        response = await super().__call__(*args, **kwargs)
        if not self.answered.done():
            self.answered.set_result(response)
        return response


class DirectDispatch:
    """Route a verified, parsed request to its handler; answer as soon as it acks."""

    def __init__(self, door: SlackFrontDoor, command: str = "/platform") -> None:
        self.door = door
        self.command = command
        self._running: set[asyncio.Task[None]] = set()

    def handler_for(self, body: dict[str, Any]) -> Handler | None:
        """The handler Bolt's listeners would pick for `body`; None: leave it to Bolt."""
        door = self.door
        if "command" in body:
            if body["command"] != self.command:
                return None
            return lambda ack, b: door.on_platform(ack, b, AsyncRespond(response_url=_url(b)))
        kind = body.get("type")
        if kind == "block_actions":
            actions = body.get("actions")
            if not actions or not actions[0].get("action_id"):
                return None
            return lambda ack, b: door.on_button(ack, b, AsyncRespond(response_url=_url(b)))
        if kind == "view_submission":
            if not (body.get("view") or {}).get("callback_id"):
                return None
            return door.on_form
        if kind == "block_suggestion":
            return door.on_options if body.get("action_id") else None
        return None

    async def dispatch(self, body: dict[str, Any]) -> BoltResponse | None:
        """The ack's response, or None when this request is Bolt's to handle."""
        handler = self.handler_for(body)
        if handler is None:
            return None
        if "command" not in body:
            refused = refuse_other_workspace(body, self.door)
            if refused is not None:
                return refused
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[BoltResponse] = loop.create_future()
        task = loop.create_task(self._run(handler, _Ack(answered), body))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await answered

    async def _run(self, handler: Handler, ack: _Ack, body: dict[str, Any]) -> None:
        try:
            await handler(ack, body)
        except Exception as exc:
            # The handlers turn a feature's failure into a reply; this is a bug in the
            # door itself. Before the ack: the caller turns it into a 4xx/5xx as for Bolt.
            if not ack.answered.done():
                ack.answered.set_exception(exc)
            else:
                log.exception("handler failed after its ack")
            return
        if not ack.answered.done():  # a handler that never acked: Bolt answers 404 then
            log.warning("handler did not ack", extra={"type": str(body.get("type"))[:40]})
            ack.answered.set_result(BoltResponse(status=404, body=""))

    @property
    def running(self) -> int:
        """Handlers still working after their ack (for tests and shutdown)."""
        return len(self._running)

    async def drain(self, seconds: float) -> None:
        """Wait up to `seconds` for the handlers still working after their ack."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=seconds)


def _url(body: dict[str, Any]) -> str | None:
    url = body.get("response_url")
    return url if isinstance(url, str) else None
