"""A request id for every Socket Mode delivery, as the HTTP server gives every request.

In HTTP mode the server's middleware has set one already, and this keeps it. In Socket
Mode the SDK handles each delivery in a task of its own (slack_sdk's
`socket_mode/async_client.py` starts one per message), so the id set here belongs to
that delivery alone, and the handlers Bolt starts for it copy it. It is not reset after
`next()`: Bolt's `next()` only marks the chain as continued, and the listeners run after
every middleware has returned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from engine.logs import new_request_id, request_id


class RequestIds(AsyncMiddleware):
    """Set `engine.logs.request_id` for the delivery, unless it is set already."""

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        if request_id.get() is None:
            request_id.set(new_request_id())
        return await next()
