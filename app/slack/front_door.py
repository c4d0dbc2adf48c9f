"""The handlers behind `/platform`, clicks, modal submissions and mentions.

Every handler acknowledges first and works after, so Slack's 3-second deadline is
never at risk; commands marked `instant` (no I/O) answer inside the acknowledgement.
Replies go through the outbox. Nothing here decides what a command does: that is the
features', reached through one `FeatureRegistry`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond

from engine.db import Database, DatabaseUnavailable
from engine.logs import request_id
from engine.metrics import Metrics
from engine.outbox import Outbox
from features.kit.commands import Arguments, Command
from features.kit.context import Context, Ports
from features.kit.registry import FeatureRegistry
from kernel.blocks import options_answer
from kernel.errors import TryAgainLater, UsageError
from kernel.ids import SlackChannelId, SlackTeamId, SlackUserId
from kernel.interactions import Click, OpenModal, OptionsRequest, Reply, Submission
from kernel.mrkdwn import escape
from kernel.ports.platform import AuditEntry

log = logging.getLogger(__name__)

TRY_AGAIN = (
    "The platform's database is not answering right now, so nothing was done. "
    "Try again in a minute; if it keeps happening, tell the platform team."
)
WRONG_WORKSPACE = "This platform bot only answers in the workspace it is installed in."
OPTIONS_DEADLINE = 2.0
"""Seconds an external select's options may take: Slack waits 3 s, then shows nothing."""


@dataclass
class SlackFrontDoor:
    """Handlers for everything Slack sends us, with the ports they need."""

    db: Database
    outbox: Outbox
    metrics: Metrics
    ports: Ports
    features: FeatureRegistry
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
            command, args = self.features.commands.resolve(text)
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

    def _context(self, body: dict[str, Any]) -> Context:
        return Context(
            user=SlackUserId(body["user_id"]),
            channel=SlackChannelId(body["channel_id"]),
            team=SlackTeamId(body["team_id"]),
            request_key=str(body.get("trigger_id") or request_id.get()),
            ports=self.ports,
        )

    async def _run(self, command: Command, ctx: Context, args: Arguments) -> Reply:
        refused: list[str] = []

        async def work() -> Reply:
            try:
                return await command.run(ctx, args)
            except UsageError as exc:
                refused.append(exc.message)
                raise

        reply = await self._guarded(command.name, work())
        assert reply is not None
        if refused:
            await self._audit_refusal(ctx, command.name, refused[0])
        return reply

    async def _audit_refusal(self, ctx: Context, command: str, reason: str) -> None:
        """A refused command is an audit entry, with the reason the person was shown
        (messages never repeat a value that may be a secret: features/secrets)."""
        try:
            await self.ports.audit.record(
                AuditEntry.of(
                    ctx.user, "command.refused", detail={"command": command, "error": reason[:300]}
                )
            )
        except Exception:  # the person already has their answer; the log says the rest
            log.warning("could not audit a refused command", exc_info=True)

    async def _guarded(self, name: str, work: Awaitable[Reply | None]) -> Reply | None:
        """Await a feature's work; turn every failure into a reply a person can act on."""
        outcome = "ok"
        try:
            return await work
        except UsageError as exc:
            outcome = "usage_error"
            return Reply(text=usage_message(exc))
        except (DatabaseUnavailable, TryAgainLater):
            outcome = "unavailable"
            log.warning("dependency down during a request", exc_info=True)
            return Reply(text=TRY_AGAIN)
        except Exception:
            outcome = "error"
            log.exception("request failed", extra={"handler": name})
            return Reply(
                text="Something went wrong on our side, and nothing was changed. "
                f"Tell the platform team the reference `{request_id.get()}`."
            )
        finally:
            self.metrics.requests.labels(name, outcome).inc()

    # -- buttons and modals ------------------------------------------------------------

    async def on_button(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        """Ack at once; then the feature's Button decides (and checks rights) after."""
        await ack()
        action = (body.get("actions") or [{}])[0]
        action_id = str(action.get("action_id") or "")
        user = SlackUserId(str((body.get("user") or {}).get("id")))
        channel = SlackChannelId(str((body.get("channel") or {}).get("id") or ""))
        click = Click(
            user=user,
            team=SlackTeamId(str(self.team_id)),
            action_id=action_id,
            value=str(
                action.get("value") or (action.get("selected_option") or {}).get("value") or ""
            ),
            channel=channel or None,
            message_ts=(body.get("message") or {}).get("ts")
            or (body.get("container") or {}).get("message_ts"),
            response_url=body.get("response_url"),
            trigger_id=body.get("trigger_id"),
            modal=_open_modal(body),
        )
        button = self.features.button_for(action_id)
        if button is None:
            reply: Reply | None = Reply(text="This button is no longer in use; nothing was done.")
        else:
            ctx = Context(
                user=user,
                channel=channel,
                team=click.team,
                request_key=f"click:{action.get('action_ts') or request_id.get()}",
                ports=self.ports,
            )
            reply = await self._guarded(f"button:{button.action_id}", button.click(ctx, click))
        if reply is not None:
            await self._send(
                {"channel_id": channel, "response_url": click.response_url}, reply, respond
            )

    async def on_options(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """An external select's options, from the feature that serves them, within
        OPTIONS_DEADLINE; nothing (an empty list) rather than an error or a late answer."""
        user = SlackUserId(str((body.get("user") or {}).get("id")))
        request = OptionsRequest(
            user=user,
            team=SlackTeamId(str(self.team_id)),
            action_id=str(body.get("action_id") or ""),
            query=str(body.get("value") or ""),
            modal=_open_modal(body),
        )
        source = self.features.options.get(request.action_id)
        options: list[dict[str, Any]] = []
        outcome = "ok"
        if source is None:
            outcome = "unknown"
        else:
            ctx = Context(
                user=user,
                channel=SlackChannelId(""),
                team=request.team,
                request_key=f"options:{request_id.get()}",
                ports=self.ports,
            )
            try:
                options = await asyncio.wait_for(source.options(ctx, request), OPTIONS_DEADLINE)
            except TimeoutError:
                outcome = "timeout"
                log.warning("options too slow", extra={"action_id": request.action_id})
            except Exception:
                outcome = "error"
                log.exception("options failed", extra={"action_id": request.action_id})
        self.metrics.requests.labels(f"options:{request.action_id[:40]}", outcome).inc()
        await ack(**options_answer(options))

    async def on_form(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """Validate a modal before acking: errors must be in the ack to show on the form."""
        view = body.get("view") or {}
        user = SlackUserId(str((body.get("user") or {}).get("id")))
        submission = Submission(
            user=user,
            team=SlackTeamId(str(self.team_id)),
            callback_id=str(view.get("callback_id") or ""),
            view_id=str(view.get("id") or ""),
            private_metadata=str(view.get("private_metadata") or ""),
            values=_form_values(view),
            trigger_id=body.get("trigger_id"),
        )
        form = self.features.forms.get(submission.callback_id)
        if form is None:
            await ack(response_action="errors", errors={})
            return
        ctx = Context(
            user=user,
            channel=SlackChannelId(""),
            team=submission.team,
            request_key=f"view:{submission.view_id}:{view.get('hash', '')}",
            ports=self.ports,
        )
        errors: dict[str, str] | None = None

        async def submit() -> Reply | None:
            nonlocal errors
            errors = await form.submit(ctx, submission)
            return None

        failure = await self._guarded(f"form:{form.callback_id}", submit())
        if failure is not None:  # show the failure on the form's first input
            first = next(iter(submission.values), "")
            errors = {first: failure.text[:150]} if first else None
        if errors:
            await ack(response_action="errors", errors=errors)
        else:
            await ack()

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


def _open_modal(body: dict[str, Any]) -> OpenModal | None:
    """The modal a click or an options request came from, if it came from one."""
    view = body.get("view")
    if not isinstance(view, dict) or not view.get("id"):
        return None
    return OpenModal(
        id=str(view.get("id")),
        hash=str(view.get("hash") or ""),
        private_metadata=str(view.get("private_metadata") or ""),
        values=_form_values(view),
    )


def _form_values(view: dict[str, Any]) -> dict[str, Any]:
    """block_id -> value of its one input, from Slack's view.state.values."""
    values: dict[str, Any] = {}
    for block_id, actions in ((view.get("state") or {}).get("values") or {}).items():
        for state in (actions or {}).values():
            if "selected_options" in state:
                values[block_id] = [o.get("value") for o in state.get("selected_options") or []]
            elif "selected_option" in state:
                values[block_id] = (state.get("selected_option") or {}).get("value")
            elif "selected_users" in state:
                values[block_id] = list(state.get("selected_users") or [])
            else:
                for key in ("value", "selected_user", "selected_channel", "selected_date"):
                    if key in state:
                        values[block_id] = state[key]
    return values


def usage_message(exc: UsageError) -> str:
    if exc.usage:
        return f"{exc.message}\nUsage: `{escape(exc.usage)}`"
    return exc.message
