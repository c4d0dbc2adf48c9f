"""The front door of /slack/events: the signature first, then the body, then its shape.

Slack signs every request (https://docs.slack.dev/authentication/verifying-requests-from-slack:
`v0=` + HMAC-SHA256 of `v0:<timestamp>:<raw body>`, five minutes' grace), so a request
is verified on its raw bytes before a single byte is parsed; an unsigned body, however
hostile, costs one HMAC and gets 401.

Then it is parsed the way Slack encodes it, not the way Bolt guesses: Bolt's
`parse_body` (slack_bolt/request/internals.py) reads any form body that merely contains
the substring `payload` as an interactivity payload, so `/platform status payload-api`
arrived empty and was refused with 400. Here a form body is an interactivity payload
only when it has a field named exactly `payload` (https://docs.slack.dev/interactivity/
handling-user-interaction: "a payload parameter"); JSON is bounded in depth
(features.kit.webhooks.parse_json), and a field given twice is refused.

Last, its shape: every field Bolt, our middleware or our handlers read has the type Slack
documents (`team` an object with a string `id`, `event` an object with a string `type`,
`actions` a list of objects, ...). A signed body of another shape was not made by Slack
and reaches no handler: 400, never a 500 from deep inside Bolt.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from features.kit.webhooks import parse_json

SIGNATURE_WINDOW = 60 * 5
"""Seconds a timestamp stays valid (Slack's docs; slack_sdk/signature/__init__.py)."""
MAX_FORM_FIELDS = 50
"""A slash command has 13 fields; an interaction one (`payload`)."""


@dataclass(frozen=True)
class Refused(Exception):
    """The request is refused with `status` (401 unsigned, 400 malformed) and `reason`."""

    status: int
    reason: str


class Intake:
    """Verify, parse and check one request to /slack/events (HTTP mode)."""

    def __init__(self, signing_secret: str) -> None:
        self.key = signing_secret.encode()

    def verify(self, raw: bytes, headers: Mapping[str, str]) -> None:
        """Refused(401) unless Slack signed exactly these bytes within five minutes.

        As slack_sdk's `SignatureVerifier.is_valid` (slack_sdk/signature/__init__.py):
        `v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<body>`, compared in constant time,
        the timestamp within five minutes of our clock; here in one C call
        (`hmac.digest`) over the raw bytes, as Slack signs them.
        """
        timestamp = headers.get("X-Slack-Request-Timestamp")
        signature = headers.get("X-Slack-Signature")
        if not timestamp or not signature:
            raise Refused(401, "invalid request signature")
        try:
            late = abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW
        except ValueError:  # a timestamp that is not a number
            late = True
        if late:
            raise Refused(401, "invalid request signature")
        message = b"v0:" + timestamp.encode() + b":" + raw
        expected = "v0=" + hmac.digest(self.key, message, hashlib.sha256).hex()
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise Refused(401, "invalid request signature")

    def read(self, raw: bytes, headers: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
        """(the body as text, the body as Slack meant it), verified and checked."""
        self.verify(raw, headers)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "malformed request: the body is not UTF-8") from None
        body = parse(text, headers.get("Content-Type", ""))
        check_shape(body)
        return text, body


def parse(text: str, content_type: str) -> dict[str, Any]:
    """The body of a Slack request: a JSON object (Events API), a command's form fields,
    or the JSON object in an interaction's `payload` field. Refused(400) otherwise."""
    if not text:
        raise Refused(400, "malformed request: empty body")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "application/json" or text.startswith("{"):
        return _json_object(text, "the body")
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_FORM_FIELDS
        )
    except ValueError:
        raise Refused(400, "malformed request: the body is not form data") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            raise Refused(400, f"malformed request: the field {name[:40]!r} is given twice")
        fields[name] = value
    if "payload" not in fields:
        return fields
    if len(fields) > 1:
        raise Refused(400, "malformed request: an interaction carries only `payload`")
    return _json_object(fields["payload"], "`payload`")


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = parse_json(text)
    except ValueError as exc:
        raise Refused(400, f"malformed request: {what} is not JSON Slack sends ({exc})") from None
    if not isinstance(data, dict):
        raise Refused(400, f"malformed request: {what} is not a JSON object")
    return data


# -- the shape of what Slack sends ------------------------------------------------------

Types = tuple[type, ...]
STR: Types = (str,)
OPT_STR: Types = (str, type(None))
OBJ: Types = (dict,)
OPT_OBJ: Types = (dict, type(None))
LIST: Types = (list,)
FLAG: Types = (bool, str)

TOP: dict[str, Types] = {
    "type": STR,
    "token": STR,
    "team_id": STR,
    "user_id": STR,
    "channel_id": STR,
    "enterprise_id": OPT_STR,
    "context_team_id": OPT_STR,
    "api_app_id": STR,
    "trigger_id": STR,
    "response_url": STR,
    "command": STR,
    "text": STR,
    "event_id": STR,
    "challenge": STR,
    "action_id": STR,
    "block_id": STR,
    "value": STR,
    "callback_id": STR,
    "team": OPT_OBJ,
    "user": OBJ,
    "channel": OPT_OBJ,
    "enterprise": (dict, str, type(None)),
    "event": OBJ,
    "actions": LIST,
    "view": OBJ,
    "message": OBJ,
    "container": OBJ,
    "state": OBJ,
    "authorizations": LIST,
    "is_enterprise_install": FLAG,
}
"""Top-level fields (commands, interactions, events): their types when present."""

INSIDE: dict[str, dict[str, Types]] = {
    "team": {"id": STR, "domain": STR, "enterprise_id": STR},
    "user": {"id": STR, "team_id": STR, "name": STR, "username": STR},
    "channel": {"id": STR, "name": STR},
    "enterprise": {"id": STR},
    "message": {"ts": STR, "thread_ts": STR, "text": STR},
    "container": {"message_ts": STR, "channel_id": STR, "view_id": STR, "type": STR},
    "view": {
        "id": STR,
        "callback_id": STR,
        "private_metadata": STR,
        "hash": STR,
        "state": OBJ,
        "blocks": LIST,
        "type": STR,
    },
    "event": {
        "type": STR,
        "channel": (str, dict),
        "user": (str, dict),
        "ts": STR,
        "thread_ts": STR,
        "text": STR,
        "event_ts": STR,
    },
}
"""Fields of those objects that Bolt or our handlers read."""

ACTION: dict[str, Types] = {
    "action_id": STR,
    "block_id": STR,
    "value": STR,
    "type": STR,
    "action_ts": STR,
    "selected_option": OPT_OBJ,
    "selected_options": LIST,
}

INTERACTIONS = frozenset(
    {"block_actions", "block_suggestion", "view_submission", "view_closed", "shortcut"}
)
"""Interaction payloads: each says who acted (`user.id`)."""


def check_shape(body: dict[str, Any]) -> None:
    """Refused(400) unless every field we (or Bolt) read has the type Slack gives it."""
    _fields(body, TOP, "")
    for name, fields in INSIDE.items():
        value = body.get(name)
        if isinstance(value, dict):
            _fields(value, fields, f"{name}.")
    kind = body.get("type")
    if "command" in body:
        for name in ("team_id", "user_id", "channel_id"):
            _need(body, name, STR, "")
    elif kind in INTERACTIONS:
        _need(body, "user", OBJ, "")
        _need(body["user"], "id", STR, "user.")
    elif kind == "event_callback":
        _need(body, "team_id", STR, "")
        _need(body, "event", OBJ, "")
        _need(body["event"], "type", STR, "event.")
    elif kind is None and "ssl_check" not in body:
        raise Refused(400, "malformed request: neither a command, an interaction nor an event")
    for index, action in enumerate(body.get("actions") or []):
        if not isinstance(action, dict):
            raise Refused(400, f"malformed request: `actions.{index}` must be an object")
        _fields(action, ACTION, f"actions.{index}.")
    view = body.get("view")
    if isinstance(view, dict) and isinstance(view.get("state"), dict):
        _view_state(view["state"])
    for index, item in enumerate(body.get("authorizations") or []):
        if not isinstance(item, dict):
            raise Refused(400, f"malformed request: `authorizations.{index}` must be an object")


def _view_state(state: dict[str, Any]) -> None:
    values = state.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(actions, dict) and all(isinstance(s, dict) for s in actions.values())
        for actions in values.values()
    ):
        raise Refused(400, "malformed request: `view.state.values` must map blocks to inputs")


def _fields(obj: dict[str, Any], types: dict[str, Types], prefix: str) -> None:
    for name, allowed in types.items():
        if name in obj and not isinstance(obj[name], allowed):
            raise Refused(400, f"malformed request: `{prefix}{name}` must be {_say(allowed)}")


def _need(obj: dict[str, Any], name: str, allowed: Types, prefix: str) -> None:
    if not isinstance(obj.get(name), allowed):
        raise Refused(400, f"malformed request: `{prefix}{name}` must be {_say(allowed)}")


def _say(allowed: Types) -> str:
    words = {str: "a string", dict: "an object", list: "a list", bool: "true or false"}
    return " or ".join(words.get(t, "null") for t in allowed)
