"""The HTTP server: Slack's request URL and the endpoints operators and probes use.

POST /slack/events   commands, interactivity and events (signed by Slack)
POST /alerts/alertmanager  Alertmanager's webhook (bearer token; features.alerts)
POST /webhooks/gitlab      GitLab's pipeline webhook (X-Gitlab-Token; features.pipelines)
GET  /healthz        the process is up
GET  /readyz         the database answers (503 otherwise)
GET  /metrics        Prometheus metrics
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from app.slack.direct import DirectDispatch
from app.slack.intake import Intake, Refused
from engine.db import Database
from engine.logs import new_request_id, request_id
from engine.metrics import Metrics
from features.kit.registry import Route

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""Slack's payloads are far smaller; anything larger is refused with 413."""


def build_web_app(
    *,
    bolt: AsyncApp | None,
    db: Database,
    metrics: Metrics,
    routes: Sequence[Route] = (),
    signing_secret: str | None = None,
    direct: DirectDispatch | None = None,
) -> web.Application:
    """The aiohttp application; `bolt` is None in Socket Mode (no request URL needed).

    `routes` are the features' webhooks (each reads its own body, bounded). Requests to
    /slack/events pass `app.slack.intake` (signature, then body, then shape) before Bolt
    sees them; Bolt checks the signature again, as a second line. With `direct`, commands,
    clicks, forms and options skip Bolt and are answered the moment their handler acks
    (`app.slack.direct`); the rest still goes through Bolt.
    """

    if bolt is not None and not signing_secret:
        raise ValueError("the request URL needs the signing secret (SLACK_SIGNING_SECRET)")
    intake = Intake(signing_secret) if signing_secret else None
    ack_timers: dict[str, Any] = {}

    async def slack_events(request: web.Request) -> web.Response:
        started = time.perf_counter()
        kind = "malformed"
        try:
            assert bolt is not None and intake is not None
            raw = await request.read()
            text, body = intake.read(raw, request.headers)
            kind = _kind(body)
            answer = await direct.dispatch(body) if direct is not None else None
            if answer is None:
                bolt_request = ParsedRequest(
                    raw_body=text,
                    body=body,
                    query=request.query_string,
                    headers={k.lower(): v for k, v in request.headers.items()},
                )
                answer = await bolt.async_dispatch(bolt_request)
            if "set-cookie" in answer.headers:  # never from an ack; Bolt's adapter knows them
                response = await to_aiohttp_response(answer)
            else:
                response = _web_response(answer)
        except Refused as refused:
            # Nothing of the body was used: refused before Bolt or a handler saw it.
            log.info("request to /slack/events refused: %s", refused.reason)
            response = web.Response(status=refused.status, text=refused.reason)
            kind = "unsigned" if refused.status == 401 else "malformed"
        except (ValueError, TypeError, AttributeError, KeyError):
            # A signed body of a shape the intake let through and Bolt choked on: a gap in
            # app.slack.intake's checks (log it), still the sender's doing, never a 500.
            log.warning("signed request to /slack/events not understood", exc_info=True)
            response = web.Response(status=400, text="malformed request body")
        timer = ack_timers.get(kind)
        if timer is None:  # a handful of kinds: labels() once each, not per request
            timer = ack_timers[kind] = metrics.ack_seconds.labels(kind)
        timer.observe(time.perf_counter() - started)
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if await db.ping():
            return web.json_response({"status": "ready", "database": "ok"})
        return web.json_response({"status": "not ready", "database": "unreachable"}, status=503)

    async def metrics_endpoint(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    app = web.Application(client_max_size=MAX_BODY, middlewares=[with_request_id])
    if bolt is not None:
        app.router.add_post("/slack/events", slack_events)
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


@web.middleware
async def with_request_id(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every request gets an id: on each log line it causes (and on the Runs it starts),
    and in the `X-Request-Id` response header, so a caller can quote it."""
    rid = new_request_id()
    token = request_id.set(rid)
    try:
        response = await handler(request)
    finally:
        request_id.reset(token)
    if not response.prepared:
        response.headers["X-Request-Id"] = rid
    return response


def _web_response(answer: BoltResponse) -> web.Response:
    """Bolt's answer as aiohttp's, as slack_bolt.adapter.aiohttp.to_aiohttp_response makes
    it (Bolt's acks set no cookies), without its regular expression per request."""
    headers = answer.first_headers_without_set_cookie()
    content_type = headers.pop("content-type", None) or (
        "application/json" if answer.body.startswith("{") else "text/plain"
    )
    return web.Response(
        status=answer.status,
        body=answer.body.encode(),
        headers=headers,
        content_type=content_type.split(";", 1)[0],
        charset="utf-8",
    )


def _kind(body: dict[str, Any]) -> str:
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if isinstance(kind, str) and kind.isidentifier() else "other"


class ParsedRequest(AsyncBoltRequest):
    """A Bolt request whose body was parsed by `app.slack.intake`, not by Bolt's
    `parse_body` (which takes any form body containing "payload" for an interaction).

    Bolt still gets the raw text, for its own signature check."""

    def __init__(
        self,
        *,
        raw_body: str,
        body: dict[str, Any],
        query: str,
        headers: dict[str, str | Sequence[str]],
    ) -> None:
        super().__init__(body="", query=query, headers=headers)  # "" parses to {}
        self.raw_body = raw_body
        self.body = body
        self.context = build_async_context(AsyncBoltContext({}), body)

    def to_copyable(self) -> ParsedRequest:
        copy = ParsedRequest(raw_body=self.raw_body, body=self.body, query="", headers={})
        copy.query, copy.headers = self.query, self.headers
        copy.context = self.context.to_copyable()
        return copy
