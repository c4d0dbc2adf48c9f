"""Only our workspace: clicks and events from any other Slack team are refused.

Slash commands pass through: `/platform` explains a wrong workspace itself, in words.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from engine.metrics import Metrics

log = logging.getLogger(__name__)


class _Ours(Protocol):
    team_id: str | None
    metrics: Metrics


class OnlyOurWorkspace(AsyncMiddleware):
    """Refuse requests whose team is not ours (a 200 with nothing done for events, so
    Slack does not retry them; a 400 for a request that names no team)."""

    def __init__(self, ours: _Ours) -> None:
        self.ours = ours

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        body = req.body
        if "command" in body:
            return await next()
        refused = refuse_other_workspace(body, self.ours)
        return refused if refused is not None else await next()


def refuse_other_workspace(body: dict[str, Any], ours: _Ours) -> BoltResponse | None:
    """The answer to a request (not a command) from another team; None if it is ours."""
    team = body.get("team_id") or (body.get("team") or {}).get("id")
    if team is None:
        return BoltResponse(status=400, body="malformed request: no team")
    if team != ours.team_id:
        log.warning("request from another workspace ignored", extra={"team": str(team)[:40]})
        ours.metrics.requests.labels(str(body.get("type"))[:40], "wrong_workspace").inc()
        return BoltResponse(status=200, body="")
    return None
