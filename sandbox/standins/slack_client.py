"""Sends requests into the bot exactly as Slack does: signed HTTP, or Socket Mode.

Tests use it to play the Slack side of a conversation: a user types a slash command,
clicks a button, submits a modal, or an event arrives. Each request carries what Slack
puts in it (team, user, channel, a ``trigger_id`` and ``response_url`` the stand-in
honours), encoded and signed the way Slack encodes and signs it, so the bot's real
verification and parsing code runs. Hostile tests can forge signatures, replay old
timestamps, or post any body with ``raw``.

Sources:
- Signing: https://docs.slack.dev/authentication/verifying-requests-from-slack
  (``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``, 5-minute window)
- Slash commands (form-encoded fields): https://docs.slack.dev/interactivity/implementing-slash-commands
  and the field list in https://docs.slack.dev/tools/bolt-js/reference/interfaces/SlashCommand
- Interactions (``payload=<json>`` form field):
  https://docs.slack.dev/interactivity/handling-user-interaction,
  https://docs.slack.dev/reference/interaction-payloads/block_actions-payload,
  https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload
- Options requests for external selects (``block_suggestion``, sent to the app's Options
  Load URL, or over the socket; not before ``min_query_length`` characters, default 3;
  the answer holds at most 100 options or option groups):
  https://docs.slack.dev/reference/interaction-payloads/block_suggestion-payload,
  https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element
- Events API envelope and retry headers (``X-Slack-Retry-Num``, ``X-Slack-Retry-Reason``):
  https://docs.slack.dev/apis/events-api/ and https://api.slack.com/types/event
- Socket Mode envelopes (``slash_commands``, ``interactive``, ``events_api``):
  https://api.slack.com/apis/socket-mode
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from sandbox.standins.slack_api import (
    SlackStandIn,
    SlackUser,
    Workspace,
    validate_options_response,
)


@dataclass(frozen=True)
class BotResponse:
    """What the bot answered (over Socket Mode: status 200 and the ack's payload)."""

    status: int
    body: str
    headers: Mapping[str, str]

    def json(self) -> Any:
        """The body parsed as JSON; None for an empty body."""
        return json.loads(self.body) if self.body.strip() else None


@dataclass(frozen=True)
class Suggestions:
    """What an external select shows after an options request: the bot's options, or
    none when Slack could not use the answer (``problems`` says why)."""

    response: BotResponse
    options: list[dict[str, Any]]
    problems: list[str]

    @property
    def values(self) -> list[str]:
        return [str(option.get("value")) for option in self.options]


ACK_DEADLINE_S = 3.0
"""Slack waits this long for the app's answer to a command, interaction or event; later,
it shows the person an error (``operation_timeout``) or retries the event
(https://docs.slack.dev/interactivity/handling-user-interaction, "respond within 3
seconds"; https://docs.slack.dev/apis/events-api, retries after 3 s)."""


@dataclass(frozen=True)
class Ack:
    """How long the bot took to answer one delivery."""

    kind: str
    seconds: float


class SlackSender:
    """Plays Slack towards the bot's endpoint (``events_url``) or its Socket Mode client."""

    def __init__(
        self,
        *,
        events_url: str,
        signing_secret: str,
        workspace: Workspace,
        standin: SlackStandIn | None = None,
        socket_mode: bool = False,
        clock: Callable[[], float] = time.time,
        verification_token: str | None = None,
    ) -> None:
        if socket_mode and standin is None:
            raise ValueError("Socket Mode delivery goes through a SlackStandIn; pass standin=")
        self.events_url = events_url
        self.workspace = workspace
        self.standin = standin
        self.socket_mode = socket_mode
        self._secret = signing_secret.encode()
        self._clock = clock
        # Slack's deprecated verification token rides along in payloads; nobody should check it.
        self._token = verification_token or secrets.token_hex(12)
        self._session: aiohttp.ClientSession | None = None
        self.acks: list[Ack] = []
        """Every delivery's answer time, in order (what ``late_acks`` checks)."""

    @property
    def late_acks(self) -> list[Ack]:
        """Deliveries the bot answered after Slack's 3 seconds."""
        return [ack for ack in self.acks if ack.seconds >= ACK_DEADLINE_S]

    async def __aenter__(self) -> SlackSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def sign(self, body: bytes, timestamp: int) -> dict[str, str]:
        """The headers Slack signs a request with."""
        base = b"v0:" + str(timestamp).encode() + b":" + body
        digest = hmac.new(self._secret, base, hashlib.sha256).hexdigest()
        return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}

    # what a user does

    async def slash_command(
        self,
        text: str,
        *,
        user: str,
        channel: str,
        command: str = "/platform",
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> BotResponse:
        """``user`` typed ``command text`` in ``channel`` (names or ids)."""
        who = self.workspace.user(user)
        where = self.workspace.channel(channel)
        fields = {
            "token": self._token,
            "team_id": self.workspace.team_id,
            "team_domain": self.workspace.domain,
            "channel_id": where.id,
            "channel_name": where.name,
            "user_id": who.id,
            "user_name": who.name,
            "command": command,
            "text": text,
            "api_app_id": self.workspace.app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url(channel=where.id, user=who.id),
            "trigger_id": self._trigger_id(user=who.id),
        }
        if self.socket_mode:
            self._no_signature_in_socket_mode(timestamp, signature)
            return await self._deliver("slash_commands", fields)
        body = urlencode(fields).encode()
        return await self._post(body, "application/x-www-form-urlencoded", timestamp, signature)

    async def block_actions(
        self,
        *,
        user: str,
        action_id: str,
        value: str | None = None,
        block_id: str | None = None,
        channel: str | None = None,
        message_ts: str | None = None,
        view_id: str | None = None,
        team_id: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
        selected_option: dict[str, Any] | None = None,
    ) -> BotResponse:
        """``user`` clicked the button ``action_id`` in a message or in an open modal.

        With a stand-in, the message (``channel`` + ``message_ts``) or modal (``view_id``)
        must exist and hold that button, as on a real screen; ``value`` and ``block_id``
        default to the button's own. ``team_id`` overrides the team (foreign clicks).
        ``selected_option`` is a choice made in a select (with ``dispatch_action`` in an
        input block, Slack sends it at once, with the view and its state).
        """
        who = self.workspace.user(user)
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user_ref(who, team_id),
            "api_app_id": self.workspace.app_id,
            "token": self._token,
            "trigger_id": self._trigger_id(user=who.id, view_id=view_id),
            "team": self._team_ref(team_id),
            "enterprise": None,
            "is_enterprise_install": False,
            "state": {"values": {}},
        }
        blocks: list[dict[str, Any]] | None = None
        if view_id is not None:
            view = self._need_standin().views[view_id].view
            blocks = view["blocks"]
            payload["container"] = {"type": "view", "view_id": view_id}
            payload["view"] = view
        elif channel is not None and message_ts is not None:
            where = self.workspace.channel(channel)
            message: dict[str, Any] = {"type": "message", "ts": message_ts, "text": ""}
            if self.standin is not None:
                message = self.standin.message(where.id, message_ts).to_dict()
                blocks = message.get("blocks", [])
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": where.id,
                "is_ephemeral": False,
            }
            payload["channel"] = {"id": where.id, "name": where.name}
            payload["message"] = message
            payload["response_url"] = self._response_url(
                channel=where.id, user=who.id, message_ts=message_ts
            )
        else:
            raise ValueError("a click happens on a message (channel, message_ts) or a view_id")
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id or "",
            "type": "button",
            "action_ts": f"{self._clock():.6f}",
        }
        if blocks is not None:
            element, found_block_id = _find_element(blocks, action_id, block_id)
            action["block_id"] = found_block_id
            action["type"] = element.get("type", "button")
            if "text" in element:
                action["text"] = element["text"]
            if "style" in element:
                action["style"] = element["style"]
            if value is None:
                value = element.get("value")
        if value is not None:
            action["value"] = value
        if selected_option is not None:
            action["selected_option"] = selected_option
            if view_id is not None:
                state = {"type": action["type"], "selected_option": selected_option}
                values = {action["block_id"]: {action_id: state}}
                payload["view"] = {**payload["view"], "state": {"values": values}}
        payload["actions"] = [action]
        return await self._interaction(payload, timestamp, signature)

    async def block_suggestion(
        self,
        *,
        user: str,
        action_id: str,
        value: str,
        view_id: str,
        block_id: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> Suggestions:
        """``user`` opened (or typed ``value`` into) the external select ``action_id`` in
        the open modal ``view_id``: Slack asks the app for options, and shows them.

        Refuses (ValueError) what Slack would never send: a request for a select that is
        not external, or before ``min_query_length`` characters were typed.
        """
        standin = self._need_standin()
        who = self.workspace.user(user)
        view = standin.views[view_id].view
        element, found_block_id = _find_element(view["blocks"], action_id, block_id)
        if element.get("type") not in ("external_select", "multi_external_select"):
            raise ValueError(f"{action_id!r} is a {element.get('type')}, not an external select")
        if not standin.external_options:
            raise ValueError("the app has no Options Load URL (nor Socket Mode) to ask")
        if len(value) < int(element.get("min_query_length", 3)):
            raise ValueError(
                f"Slack asks for options after {element.get('min_query_length', 3)} characters"
            )
        payload: dict[str, Any] = {
            "type": "block_suggestion",
            "user": self._user_ref(who, None),
            "container": {"type": "view", "view_id": view_id},
            "api_app_id": self.workspace.app_id,
            "token": self._token,
            "action_id": action_id,
            "block_id": found_block_id,
            "value": value,
            "team": self._team_ref(None),
            "enterprise": None,
            "is_enterprise_install": False,
            "view": view,
        }
        response = await self._interaction(payload, timestamp, signature)
        answer: Any = None
        problems: list[str] = []
        if response.status != 200:
            problems = [f"HTTP {response.status}"]
        else:
            try:
                answer = response.json()
            except ValueError:
                problems = ["the answer is not JSON"]
            else:
                problems = validate_options_response(answer)
        if problems:
            return Suggestions(response, [], problems)
        groups = answer.get("option_groups")
        options = (
            [o for group in groups for o in group["options"]]
            if groups is not None
            else answer["options"]
        )
        return Suggestions(response, list(options), [])

    async def view_submission(
        self,
        *,
        user: str,
        view_id: str,
        values: dict[str, dict[str, Any]],
        team_id: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> BotResponse:
        """``user`` pressed Submit on the open modal ``view_id``.

        ``values`` is the view state, ``{block_id: {action_id: state}}``; a plain string
        state is shorthand for a plain_text_input's ``{"type": ..., "value": ...}``.
        Afterwards the stand-in closes, updates or keeps the modal as the answer says.
        """
        standin = self._need_standin()
        who = self.workspace.user(user)
        state = {
            block_id: {action_id: _state(item) for action_id, item in actions.items()}
            for block_id, actions in values.items()
        }
        payload: dict[str, Any] = {
            "type": "view_submission",
            "team": self._team_ref(team_id),
            "user": self._user_ref(who, team_id),
            "api_app_id": self.workspace.app_id,
            "token": self._token,
            "trigger_id": self._trigger_id(user=who.id, view_id=view_id),
            "view": {**standin.views[view_id].view, "state": {"values": state}},
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        response = await self._interaction(payload, timestamp, signature)
        if response.status == 200:
            standin.settle_view_submission(view_id, response.body)
        return response

    async def event_callback(
        self,
        event: dict[str, Any],
        *,
        event_id: str,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> BotResponse:
        """An Events API delivery; a retry repeats ``event_id`` and adds the retry headers."""
        ws = self.workspace
        envelope = {
            "token": self._token,
            "team_id": ws.team_id,
            "context_team_id": ws.team_id,
            "api_app_id": ws.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(self._clock()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": ws.team_id,
                    "user_id": ws.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{secrets.token_urlsafe(24)}",
        }
        if self.socket_mode:
            self._no_signature_in_socket_mode(timestamp, signature)
            return await self._deliver(
                "events_api",
                envelope,
                accepts_response_payload=False,
                retry_attempt=retry_num or 0,
                retry_reason=retry_reason or "",
            )
        headers: dict[str, str] = {}
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        body = json.dumps(envelope).encode()
        return await self._post(body, "application/json", timestamp, signature, headers)

    async def raw(
        self,
        body: bytes,
        *,
        content_type: str,
        timestamp: int | None = None,
        signature: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> BotResponse:
        """Any body, signed as Slack would (or with a forged ``signature``)."""
        return await self._post(body, content_type, timestamp, signature, headers)

    # plumbing

    async def _interaction(
        self, payload: dict[str, Any], timestamp: int | None, signature: str | None
    ) -> BotResponse:
        if self.socket_mode:
            self._no_signature_in_socket_mode(timestamp, signature)
            return await self._deliver("interactive", payload)
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self._post(body, "application/x-www-form-urlencoded", timestamp, signature)

    async def _post(
        self,
        body: bytes,
        content_type: str,
        timestamp: int | None,
        signature: str | None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BotResponse:
        when = int(self._clock()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            **self.sign(body, when),
        }
        if signature is not None:
            headers["X-Slack-Signature"] = signature
        headers.update(extra_headers or {})
        if self._session is None:
            self._session = aiohttp.ClientSession()
        started = time.perf_counter()
        async with self._session.post(self.events_url, data=body, headers=headers) as answer:
            response = BotResponse(answer.status, await answer.text(), answer.headers.copy())
        self.acks.append(Ack(content_type, time.perf_counter() - started))
        return response

    async def _deliver(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = True,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> BotResponse:
        started = time.perf_counter()
        ack = await self._need_standin().socket_deliver(
            type=type,
            payload=payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        self.acks.append(Ack(type, time.perf_counter() - started))
        answer = ack.get("payload")
        body = "" if answer is None else json.dumps(answer)
        return BotResponse(200, body, {"Content-Type": "application/json"} if body else {})

    def _no_signature_in_socket_mode(self, timestamp: int | None, signature: str | None) -> None:
        if timestamp is not None or signature is not None:
            raise ValueError("Socket Mode messages are not signed; timestamp/signature mean HTTP")

    def _need_standin(self) -> SlackStandIn:
        if self.standin is None:
            raise ValueError("this needs the SlackStandIn that holds the messages and views")
        return self.standin

    def _response_url(self, *, channel: str, user: str, message_ts: str | None = None) -> str:
        if self.standin is not None:
            return self.standin.new_response_url(channel=channel, user=user, message_ts=message_ts)
        return (
            f"https://hooks.slack.com/commands/{self.workspace.team_id}/"
            f"{secrets.randbelow(10**12)}/{secrets.token_urlsafe(18)}"
        )

    def _trigger_id(self, *, user: str, view_id: str | None = None) -> str:
        if self.standin is not None:
            return self.standin.issue_trigger_id(user=user, view_id=view_id)
        return f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"

    def _team_ref(self, team_id: str | None) -> dict[str, str]:
        return {"id": team_id or self.workspace.team_id, "domain": self.workspace.domain}

    def _user_ref(self, user: SlackUser, team_id: str | None) -> dict[str, str]:
        return {
            "id": user.id,
            "username": user.name,
            "name": user.name,
            "team_id": team_id or self.workspace.team_id,
        }


def _find_element(
    blocks: list[dict[str, Any]], action_id: str, block_id: str | None
) -> tuple[dict[str, Any], str]:
    """The interactive element with ``action_id`` (in ``block_id``, if given)."""
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        candidates = [*block.get("elements", []), block.get("accessory"), block.get("element")]
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element, str(block.get("block_id", ""))
    where = f" in block {block_id!r}" if block_id else ""
    raise LookupError(f"no element with action_id {action_id!r}{where}: nothing to click")


def _state(item: Any) -> dict[str, Any]:
    if isinstance(item, str):
        return {"type": "plain_text_input", "value": item}
    if isinstance(item, dict):
        return item
    raise TypeError(f"a view state value is a dict or a str, not {type(item).__name__}")
