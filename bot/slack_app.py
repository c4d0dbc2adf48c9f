"""Slack wiring: the Bolt app and the handlers behind `/platform`, clicks and events.

Every handler acknowledges first and works after, so Slack's 3-second deadline is
never at risk; commands marked `instant` (no I/O) answer inside the acknowledgement.
Replies go through the outbox. Nothing here decides what a command does: that is
`commands/`, reached through one `CommandRegistry`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db import Database, DatabaseUnavailable, ProcessedRequestRow
from bot.domain import (
    AuditLog,
    Directory,
    Reply,
    RunSubmitter,
    SlackChannelId,
    SlackTeamId,
    SlackUserId,
    TryAgainLater,
    UsageError,
)
from bot.logs import request_id
from bot.metrics import Metrics
from bot.outbox import Outbox
from catalog import Catalog
from commands.base import Arguments, Command, CommandContext, CommandRegistry

log = logging.getLogger(__name__)

TRY_AGAIN = (
    "The platform's database is not answering right now, so nothing was done. "
    "Try again in a minute; if it keeps happening, tell the platform team."
)
WRONG_WORKSPACE = "This platform bot only answers in the workspace it is installed in."


@dataclass
class SlackFrontDoor:
    """Handlers for everything Slack sends us, with the ports they need."""

    db: Database
    outbox: Outbox
    metrics: Metrics
    catalog: Catalog
    directory: Directory
    audit: AuditLog
    runs: RunSubmitter
    registry: CommandRegistry
    team_id: str | None = None
    """Our workspace; set from settings or auth.test before the first request."""

    # -- /platform -------------------------------------------------------------------

    async def on_platform(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        text = str(body.get("text") or "")
        if body.get("team_id") != self.team_id:
            await ack(response_type="ephemeral", text=WRONG_WORKSPACE)
            log.warning("command from another workspace", extra={"team": body.get("team_id")})
            self.metrics.requests.labels("unknown", "wrong_workspace").inc()
            return
        try:
            command, args = self.registry.resolve(text)
        except UsageError as exc:
            await ack(response_type="ephemeral", text=usage_message(exc))
            self.metrics.requests.labels("unknown", "usage_error").inc()
            return
        ctx = self._context(body)
        if command.instant:
            reply = await self._run(command, ctx, args)
            await ack(
                response_type="ephemeral" if reply.ephemeral else "in_channel",
                text=reply.text,
                blocks=list(reply.blocks) or None,
            )
            return
        await ack()
        reply = await self._run(command, ctx, args)
        await self._send(body, reply, respond)

    def _context(self, body: dict[str, Any]) -> CommandContext:
        return CommandContext(
            user=SlackUserId(body["user_id"]),
            channel=SlackChannelId(body["channel_id"]),
            team=SlackTeamId(body["team_id"]),
            request_key=str(body.get("trigger_id") or request_id.get()),
            catalog=self.catalog,
            directory=self.directory,
            audit=self.audit,
            runs=self.runs,
            commands=self.registry,
        )

    async def _run(self, command: Command, ctx: CommandContext, args: Arguments) -> Reply:
        """Run a command; turn every failure into a reply a person can act on."""
        outcome = "ok"
        try:
            return await command.run(ctx, args)
        except UsageError as exc:
            outcome = "usage_error"
            return Reply(text=usage_message(exc))
        except (DatabaseUnavailable, TryAgainLater):
            outcome = "unavailable"
            log.warning("dependency down during a command", exc_info=True)
            return Reply(text=TRY_AGAIN)
        except Exception:
            outcome = "error"
            log.exception("command failed", extra={"command": command.name})
            return Reply(
                text="Something went wrong on our side, and nothing was changed. "
                f"Tell the platform team the reference `{request_id.get()}`."
            )
        finally:
            self.metrics.requests.labels(command.name, outcome).inc()

    async def _send(self, body: dict[str, Any], reply: Reply, respond: AsyncRespond) -> None:
        """Reply through the outbox; straight through the response_url if the database is down."""
        channel, url = str(body.get("channel_id")), str(body.get("response_url"))
        try:
            await self.outbox.submit(
                lambda session, outbox: outbox.enqueue_response(
                    session,
                    channel,
                    url,
                    text=reply.text,
                    blocks=reply.blocks,
                    ephemeral=reply.ephemeral,
                )
            )
        except DatabaseUnavailable:  # not durable, but better than silence
            await respond(
                text=reply.text,
                blocks=list(reply.blocks) or None,
                response_type="ephemeral" if reply.ephemeral else "in_channel",
            )

    # -- Events API --------------------------------------------------------------------

    async def on_app_mention(self, event: dict[str, Any]) -> None:
        channel, ts = str(event.get("channel")), str(event.get("thread_ts") or event.get("ts"))
        await self.outbox.submit(
            lambda session, outbox: outbox.enqueue_post(
                session,
                channel,
                thread_ts=ts,
                text="Hi! I answer to `/platform`. Type `/platform help` to see what I can do.",
            )
        )

    # -- global middleware -------------------------------------------------------------

    async def only_our_workspace(
        self, body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        """Refuse interactions and events from any other workspace (commands say why)."""
        if "command" in body:
            await next()  # on_platform answers with an explanation
            return None
        team = body.get("team_id") or (body.get("team") or {}).get("id")
        if team is None:
            return BoltResponse(status=400, body="malformed request: no team")
        if team != self.team_id:
            log.warning("request from another workspace ignored", extra={"team": team})
            self.metrics.requests.labels(str(body.get("type")), "wrong_workspace").inc()
            return BoltResponse(status=200, body="")
        await next()
        return None

    async def dedupe_deliveries(
        self, body: dict[str, Any], next: Callable[[], Awaitable[None]]
    ) -> BoltResponse | None:
        """Handle each Events API delivery once, whatever Slack retries."""
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            try:
                first = await self.db.run(lambda s: _first_time(s, f"event:{event_id}"))
            except DatabaseUnavailable:
                return BoltResponse(status=503, body="database unavailable; retry later")
            if not first:
                self.metrics.requests.labels("event", "duplicate").inc()
                return BoltResponse(status=200, body="")
        await next()
        return None


def _first_time(session: Session, key: str) -> bool:
    try:
        with session.begin_nested():
            session.add(ProcessedRequestRow(key=key))
        return True
    except IntegrityError:
        return False


def usage_message(exc: UsageError) -> str:
    if exc.usage:
        return f"{exc.message}\nUsage: `{exc.usage}`"
    return exc.message


def build_bolt_app(
    door: SlackFrontDoor,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    socket_mode: bool,
) -> AsyncApp:
    """The Bolt app: signature checks (HTTP mode), our middleware, our handlers."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=not socket_mode,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )
    app.middleware(door.only_our_workspace)
    app.middleware(door.dedupe_deliveries)
    app.command("/platform")(door.on_platform)
    app.event("app_mention")(door.on_app_mention)
    return app
