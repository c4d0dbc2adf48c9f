"""A Slack Web API stand-in over HTTP, honest about the parts the bot relies on.

The bot's real ``slack_sdk`` clients talk to it unchanged (``base_url=standin.api_url``).
It keeps what Slack would show (messages, threads, ephemerals, open modals), records
every call, and refuses what Slack refuses, the way Slack refuses it:

- API errors are HTTP 200 with ``{"ok": false, "error": ...}``; a name Slack has no method
  by is ``unknown_method`` (also HTTP 200, with ``req_method``). No token is
  ``not_authed``, a token it never issued ``invalid_auth``, the other kind of token it
  issued ``not_allowed_token_type`` (``apps.connections.open`` takes only the app-level
  ``xapp-`` token, and only in the Authorization header).
- Bodies may be form-encoded or JSON; the token comes as ``Authorization: Bearer`` or,
  in form and query data only, as ``token``. ``blocks``, ``attachments`` and ``view`` may
  arrive as JSON strings inside form data.
- Block Kit is checked the way Slack checks it (50 blocks a message, 100 a modal, text
  lengths, element counts, known types, unique ``block_id`` per message and
  ``action_id`` per block). A bad message is ``invalid_blocks``, a bad modal
  ``invalid_arguments``; both carry ``response_metadata.messages`` such as
  ``"[ERROR] no more than 50 items allowed [json-pointer:/blocks]"``.
- Select menus: a static select holds at most 100 ``options`` or 100 ``option_groups``
  of at most 100 options each; an ``external_select`` has no ``options`` of its own and is
  refused unless the app has an Options Load URL (``options_load_url``) or Socket Mode
  (``socket_mode_enabled``), where its ``block_suggestion`` requests go; an options
  answer (``validate_options_response``) holds at most 100 options or groups. Inputs:
  ``dispatch_action`` is a boolean; a plain-text input's ``min_length`` is 0..3000 and
  ``max_length`` 1..3000.
- ``chat.postMessage`` (and ``in_channel`` posts through a response_url) is limited per
  channel, one message a second with a short burst; past that it answers HTTP 429 with
  ``Retry-After`` (whole seconds) and ``{"ok": false, "error": "ratelimited"}``.
- Every other method has its tier's budget per minute (Tier 1: 1, Tier 2: 20, Tier 3: 50,
  Tier 4: 100; ``slack_limits.py`` names each method's tier and its page); past it the
  answer is the same HTTP 429 + ``Retry-After``. ``usergroups.*`` on a free plan
  (``Workspace.plan``) answer ``plan_upgrade_required``. Calls may take time like real
  ones (``latency_ms``, or ``SANDBOX_SLACK_LATENCY_MS``).
- A ``trigger_id`` works once (``exchanged_trigger_id``) and for 3 s
  (``expired_trigger_id``); a response_url works five times in 30 minutes.

Sources (the stand-in follows these first; where they are silent it follows Slack's
answers as quoted in public code, and where nothing was found it says "assumed"):

- Web API conventions, tokens, content types: https://docs.slack.dev/apis/web-api/
- chat.postMessage: https://docs.slack.dev/reference/methods/chat.postMessage (error
  codes as listed in https://github.com/slack-ruby/slack-api-ref methods/chat/*.json)
- chat.update, response_url edits: https://docs.slack.dev/messaging/modifying-messages
- chat.postEphemeral: https://api.slack.com/methods/chat.postEphemeral (user_not_in_channel)
- Rate limits, 429 and Retry-After: https://docs.slack.dev/apis/web-api/rate-limits
- Blocks: https://api.slack.com/reference/block-kit/blocks (50 a message, 100 a modal),
  https://docs.slack.dev/reference/block-kit/blocks/section-block (3000, 10 fields of
  2000, block_id 255), .../actions-block (25 elements), .../header-block (150),
  https://docs.slack.dev/tools/node-slack-sdk/reference/types/interfaces/Button
  (text 75, value 2000, url 3000, action_id 255 and unique in its block)
- Select menus: https://docs.slack.dev/reference/block-kit/block-elements/select-menu-element
  (static: at most 100 options, or option_groups; external: options from the app's
  Options Load URL, ``min_query_length`` default 3),
  https://docs.slack.dev/reference/block-kit/composition-objects/option-group-object (100
  groups of 100 options, label 75),
  https://docs.slack.dev/reference/interaction-payloads/block_suggestion-payload ("a
  maximum of 100 options or option groups"), the Options Load URL setting in
  https://docs.slack.dev/reference/app-manifest (settings.interactivity.message_menu_options_url)
- Inputs: https://docs.slack.dev/reference/block-kit/blocks/input-block (label and hint
  2000, ``dispatch_action`` boolean), https://docs.slack.dev/reference/block-kit/block-elements/plain-text-input-element
  (min_length 0..3000, max_length 1..3000)
- Views: https://api.slack.com/reference/surfaces/views (title, submit, close 24;
  100 blocks; private_metadata 3000; callback_id 255; submit needed with input blocks)
- views.open/push errors: slack-api-ref methods/views/*.json (expired_trigger_id,
  exchanged_trigger_id, invalid_trigger_id, push_limit_reached: 3 views)
- response_url: https://docs.slack.dev/interactivity/handling-user-interaction
  (five uses within 30 minutes; response_type, replace_original, delete_original)
- apps.connections.open: https://docs.slack.dev/reference/methods/apps.connections.open
  (app-level token, in the Authorization header only)
- Quoted from Slack's answers: ``unknown_method`` is HTTP 200 with ``req_method``; the
  texts "no more than 50 items allowed [json-pointer:/blocks]", "failed to match all
  allowed schemas" + "must be less than 3001 characters [.../text/text]", "must be more
  than 0 characters", "unsupported type: X", "missing required field: X", "invalid
  additional property: X", "must provide at least 1 items"; views refused as
  ``invalid_arguments`` ("must be less than 25 characters [json-pointer:/view/title/text]",
  "no more than 100 items allowed", "must define `submit` to use an `input` block in
  modals"); a reply's ts as thread_ts is ``invalid_thread_ts``; ``expired_url``.
- Assumed: the wording of the refusal of an ``external_select`` without an Options Load
  URL (a modal with one is reported to fail with ``invalid_arguments``), of "must
  provide either options or option_groups" and of an out-of-range input length; an
  unknown thread_ts is also ``invalid_thread_ts``; a worn-out response_url
  answers HTTP 404 ``used_url`` / ``expired_url`` (reports differ on the status); a
  response_url refuses bad content with HTTP 400; the wording of "duplicate block_id",
  "duplicate action_id" and "must be a valid enum value".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from sandbox.standins._server import LoopbackServer
from sandbox.standins.slack_limits import MethodLimits
from sandbox.standins.slack_socket import SocketModeHub

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
MESSAGE_TEXT_MAX = 40_000
MESSAGE_MAX_ATTACHMENTS = 100
VIEW_STACK_MAX = 3
RESPONSE_URL_USES = 5
RESPONSE_URL_LIFETIME_S = 30 * 60


# --- the workspace --------------------------------------------------------------------


@dataclass(frozen=True)
class SlackUser:
    id: str
    name: str
    real_name: str = ""
    email: str = ""
    is_bot: bool = False
    tz: str = "UTC"


@dataclass(frozen=True)
class SlackUserGroup:
    id: str
    handle: str
    name: str
    users: tuple[str, ...]


@dataclass(frozen=True)
class SlackChannel:
    id: str
    name: str
    is_private: bool = False
    members: tuple[str, ...] | None = None
    """User ids in the channel; None means every user of the workspace."""
    bot_is_member: bool = True


@dataclass(frozen=True)
class Workspace:
    """The people, groups and channels the stand-in knows, and the tokens it accepts."""

    team_id: str
    team_name: str
    bot_token: str
    app_token: str
    bot_user_id: str
    users: tuple[SlackUser, ...]
    usergroups: tuple[SlackUserGroup, ...]
    channels: tuple[SlackChannel, ...]
    app_id: str = "A0PLATFORM"
    bot_id: str = "B0PLATFORM"
    plan: Literal["free", "pro", "business+", "enterprise"] = "pro"
    """Slack's plan; user groups need a paid one (``plan_upgrade_required`` on free)."""

    @property
    def domain(self) -> str:
        """The workspace's subdomain, as in https://<domain>.slack.com."""
        return re.sub(r"[^a-z0-9]+", "-", self.team_name.lower()).strip("-") or "workspace"

    def user_by_name(self, name: str) -> SlackUser:
        wanted = name.removeprefix("@")
        for user in self.users:
            if user.name == wanted:
                return user
        raise KeyError(f"no user named {name!r} in {self.team_name}")

    def channel_by_name(self, name: str) -> SlackChannel:
        wanted = name.removeprefix("#")
        for channel in self.channels:
            if channel.name == wanted:
                return channel
        raise KeyError(f"no channel named {name!r} in {self.team_name}")

    def user(self, ref: str) -> SlackUser:
        """A user by id, name or @name."""
        for user in self.users:
            if user.id == ref:
                return user
        return self.user_by_name(ref)

    def channel(self, ref: str) -> SlackChannel:
        """A channel by id, name or #name."""
        for channel in self.channels:
            if channel.id == ref:
                return channel
        return self.channel_by_name(ref)

    def is_member(self, channel: SlackChannel, user_id: str) -> bool:
        if channel.members is None:
            return any(user.id == user_id for user in self.users)
        return user_id in channel.members


# --- what the stand-in records ---------------------------------------------------------


@dataclass
class RecordedCall:
    """One Web API call (or response_url post, method ``"response_url"``) and its answer."""

    method: str
    args: dict[str, Any]
    response: dict[str, Any]
    status: int
    at: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.response.get("ok") is True


@dataclass
class Message:
    """A message as it stands now: chat.update and response_url edits change it in place."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    user: str
    thread_ts: str | None = None
    edits: int = 0
    bot_id: str | None = None
    team: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)
    """Files shared with the message (files.completeUploadExternal)."""

    def to_dict(self) -> dict[str, Any]:
        """The message object as Slack shows it in API answers and interaction payloads."""
        data: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
            "team": self.team,
        }
        if self.files:
            data["files"] = self.files
        if self.blocks:
            data["blocks"] = self.blocks
        if self.bot_id:
            data["bot_id"] = self.bot_id
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        return data


MAX_FILE_BYTES = 1024**3
"""Slack's largest file, 1 GB (https://slack.com/help/articles/201330736)."""


@dataclass
class UploadedFile:
    """A file from files.getUploadURLExternal, its bytes once POSTed to the upload URL,
    and where files.completeUploadExternal shared it."""

    id: str
    filename: str
    length: int
    alt_txt: str | None
    content: bytes | None = None
    title: str | None = None
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None


@dataclass
class Ephemeral:
    """A message only one user saw."""

    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]]
    source: Literal["chat.postEphemeral", "response_url"]
    ts: str = ""
    thread_ts: str | None = None
    replace_original: bool = False
    delete_original: bool = False


@dataclass
class OpenView:
    """A modal on someone's screen; pushed views share their root's ``root_view_id``."""

    id: str
    user: str
    view: dict[str, Any]
    """The view as Slack returns it: id, hash, state, blocks, private_metadata, ..."""
    trigger_id: str
    root_view_id: str
    previous_view_id: str | None = None
    updates: int = 0

    @property
    def hash(self) -> str:
        return str(self.view["hash"])


@dataclass
class _Trigger:
    issued: float
    user: str | None
    view_id: str | None
    used: bool = False


@dataclass
class _Hook:
    channel: str
    user: str
    message_ts: str | None
    issued: float
    uses: int = 0


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int | None
    times: int


@dataclass
class _Bucket:
    tokens: float
    updated: float


class _Refusal(Exception):
    """An answer other than ok, shaped as Slack shapes it."""

    def __init__(
        self,
        error: str,
        *,
        status: int = 200,
        messages: list[str] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.messages = messages or []
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error, **self.extra}
        if self.messages:
            body["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in self.messages]}
        return body


# --- Block Kit, checked as Slack checks it ---------------------------------------------

_INTERACTIVE = frozenset(
    {
        "button",
        "checkboxes",
        "datepicker",
        "datetimepicker",
        "timepicker",
        "overflow",
        "radio_buttons",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
    }
)
_INPUT_ONLY = frozenset(
    {
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "file_input",
    }
)
_ELEMENTS = _INTERACTIVE | _INPUT_ONLY | {"image"}
_IN_ACTIONS = _INTERACTIVE
_IN_ACCESSORY = _INTERACTIVE | {"image"}
_IN_INPUT = (_INTERACTIVE - {"button", "overflow"}) | _INPUT_ONLY
_MAX_OPTIONS = {"overflow": 5, "checkboxes": 10, "radio_buttons": 10}
_MESSAGE_BLOCKS = frozenset(
    {
        "section",
        "divider",
        "header",
        "context",
        "actions",
        "image",
        "input",
        "rich_text",
        "markdown",
    }
)
_VIEW_BLOCKS = _MESSAGE_BLOCKS - {"markdown"}


_EXTERNAL = frozenset({"external_select", "multi_external_select"})
_STATIC = frozenset({"static_select", "multi_static_select"})
MAX_OPTIONS = 100
"""Options in a static select, options or option groups in an options answer."""


def validate_message_blocks(blocks: Any, *, external_options: bool = True) -> list[str]:
    """Slack's complaints about a message's ``blocks`` (empty when Slack would accept them).

    ``external_options``: the app has an Options Load URL (or Socket Mode).
    """
    checker = _Checker(_MESSAGE_BLOCKS, external_options=external_options)
    checker.blocks(blocks, "/blocks", max_items=MESSAGE_MAX_BLOCKS)
    return checker.problems


def validate_view(view: Any, *, external_options: bool = True) -> list[str]:
    """Slack's complaints about a modal ``view`` (empty when Slack would accept it)."""
    checker = _Checker(_VIEW_BLOCKS, external_options=external_options)
    checker.view(view, "/view")
    return checker.problems


def validate_options_response(answer: Any) -> list[str]:
    """Slack's complaints about an app's answer to a ``block_suggestion`` request: an
    object with ``options`` or ``option_groups``, at most 100 of either."""
    checker = _Checker(_VIEW_BLOCKS)
    if not isinstance(answer, dict):
        checker.fail("must be an object", "")
    elif "option_groups" in answer:
        checker.option_groups(answer["option_groups"], "/option_groups")
    elif "options" in answer:
        if answer["options"] != []:
            checker.options(answer["options"], "/options", MAX_OPTIONS)
    else:
        checker.fail("must provide either options or option_groups", "")
    return checker.problems


class _Checker:
    """Collects problems worded like Slack's: ``<what> [json-pointer:<where>]``."""

    def __init__(self, block_types: frozenset[str], *, external_options: bool = True) -> None:
        self.block_types = block_types
        self.external_options = external_options
        self.problems: list[str] = []

    def fail(self, what: str, where: str) -> None:
        self.problems.append(f"{what} [json-pointer:{where}]")

    def string(self, value: Any, where: str, *, max_len: int, min_len: int = 0) -> bool:
        if not isinstance(value, str):
            self.fail("must be a string", where)
            return False
        if len(value) < min_len:
            self.fail(f"must be more than {min_len - 1} characters", where)
            return False
        if len(value) > max_len:
            self.fail(f"must be less than {max_len + 1} characters", where)
            return False
        return True

    def items(self, value: Any, where: str, *, max_items: int, min_items: int = 1) -> bool:
        if not isinstance(value, list):
            self.fail("must be an array", where)
            return False
        if len(value) < min_items:
            self.fail(f"must provide at least {min_items} items", where)
            return False
        if len(value) > max_items:
            self.fail(f"no more than {max_items} items allowed", where)
            return False
        return True

    def required(self, obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            self.fail(f"missing required field: {key}", where)
        return obj.get(key)

    def text(self, obj: Any, where: str, *, max_len: int, plain_only: bool = False) -> None:
        """A text object: plain_text (or mrkdwn) with 1..max_len characters."""
        if not isinstance(obj, dict):
            self.fail("must be an object", where)
            return
        kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        kind = self.required(obj, "type", where)
        if kind is None:
            return
        if kind not in kinds:
            self.fail("must be a valid enum value", f"{where}/type")
            return
        allowed = (
            {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"}
        )
        for key in obj:
            if key not in allowed:
                self.fail(f"invalid additional property: {key}", where)
        value = self.required(obj, "text", where)
        if value is None:
            return
        if not isinstance(value, str):
            self.fail("must be a string", f"{where}/text")
        elif not value:
            self.fail("must be more than 0 characters", f"{where}/text")
        elif len(value) > max_len:
            if not plain_only:
                self.fail("failed to match all allowed schemas", where)
            self.fail(f"must be less than {max_len + 1} characters", f"{where}/text")

    def blocks(self, blocks: Any, where: str, *, max_items: int) -> None:
        if not isinstance(blocks, list):
            self.fail("must be an array", where)
            return
        if len(blocks) > max_items:
            self.fail(f"no more than {max_items} items allowed", where)
            return
        block_ids: set[str] = set()
        for index, block in enumerate(blocks):
            self.block(block, f"{where}/{index}", block_ids)

    def block(self, block: Any, where: str, block_ids: set[str]) -> None:
        if not isinstance(block, dict):
            self.fail("must be an object", where)
            return
        kind = self.required(block, "type", where)
        if kind is None:
            return
        if kind not in self.block_types:
            self.fail(f"unsupported type: {kind}", f"{where}/type")
            return
        block_id = block.get("block_id")
        if block_id is not None and self.string(block_id, f"{where}/block_id", max_len=255):
            if block_id in block_ids:
                self.fail(f"duplicate block_id: {block_id}", f"{where}/block_id")
            block_ids.add(block_id)
        getattr(self, f"_{kind}")(block, where)

    def _section(self, block: dict[str, Any], where: str) -> None:
        if "text" not in block and "fields" not in block:
            self.fail("missing required field: text", where)
        if "text" in block:
            self.text(block["text"], f"{where}/text", max_len=3000)
        if "fields" in block and self.items(block["fields"], f"{where}/fields", max_items=10):
            for index, item in enumerate(block["fields"]):
                self.text(item, f"{where}/fields/{index}", max_len=2000)
        if "accessory" in block:
            self.element(block["accessory"], f"{where}/accessory", _IN_ACCESSORY, set())

    def _divider(self, block: dict[str, Any], where: str) -> None:
        pass

    def _header(self, block: dict[str, Any], where: str) -> None:
        text = self.required(block, "text", where)
        if text is not None:
            self.text(text, f"{where}/text", max_len=150, plain_only=True)

    def _context(self, block: dict[str, Any], where: str) -> None:
        elements = self.required(block, "elements", where)
        if elements is None or not self.items(elements, f"{where}/elements", max_items=10):
            return
        for index, element in enumerate(elements):
            at = f"{where}/elements/{index}"
            if isinstance(element, dict) and element.get("type") == "image":
                self.image(element, at)
            else:
                self.text(element, at, max_len=3000)

    def _actions(self, block: dict[str, Any], where: str) -> None:
        elements = self.required(block, "elements", where)
        if elements is None or not self.items(elements, f"{where}/elements", max_items=25):
            return
        action_ids: set[str] = set()
        for index, element in enumerate(elements):
            self.element(element, f"{where}/elements/{index}", _IN_ACTIONS, action_ids)

    def _image(self, block: dict[str, Any], where: str) -> None:
        self.image(block, where)
        if "title" in block:
            self.text(block["title"], f"{where}/title", max_len=2000, plain_only=True)

    def _input(self, block: dict[str, Any], where: str) -> None:
        label = self.required(block, "label", where)
        if label is not None:
            self.text(label, f"{where}/label", max_len=2000, plain_only=True)
        element = self.required(block, "element", where)
        if element is not None:
            self.element(element, f"{where}/element", _IN_INPUT, set())
        if "dispatch_action" in block and not isinstance(block["dispatch_action"], bool):
            self.fail("must be a boolean", f"{where}/dispatch_action")
        if "hint" in block:
            self.text(block["hint"], f"{where}/hint", max_len=2000, plain_only=True)

    def _rich_text(self, block: dict[str, Any], where: str) -> None:
        elements = self.required(block, "elements", where)
        if elements is not None and not isinstance(elements, list):
            self.fail("must be an array", f"{where}/elements")

    def _markdown(self, block: dict[str, Any], where: str) -> None:
        text = self.required(block, "text", where)
        if text is not None:
            self.string(text, f"{where}/text", max_len=12_000, min_len=1)

    def image(self, obj: dict[str, Any], where: str) -> None:
        if "image_url" in obj:
            self.string(obj["image_url"], f"{where}/image_url", max_len=3000, min_len=1)
        elif "slack_file" not in obj:
            self.fail("missing required field: image_url", where)
        alt_text = self.required(obj, "alt_text", where)
        if alt_text is not None:
            self.string(alt_text, f"{where}/alt_text", max_len=2000, min_len=1)

    def element(
        self, element: Any, where: str, allowed: frozenset[str], action_ids: set[str]
    ) -> None:
        if not isinstance(element, dict):
            self.fail("must be an object", where)
            return
        kind = self.required(element, "type", where)
        if kind is None:
            return
        if kind not in _ELEMENTS:
            self.fail(f"unsupported type: {kind}", f"{where}/type")
            return
        if kind not in allowed:
            self.fail(f"unsupported element: {kind}", where)
            return
        action_id = element.get("action_id")
        if action_id is not None and self.string(action_id, f"{where}/action_id", max_len=255):
            if action_id in action_ids:
                self.fail(f"duplicate action_id: {action_id}", f"{where}/action_id")
            action_ids.add(action_id)
        if kind == "button":
            self.button(element, where)
        elif kind == "image":
            self.image(element, where)
        else:
            if "placeholder" in element:
                self.text(element["placeholder"], f"{where}/placeholder", max_len=150)
            if kind in _EXTERNAL:
                self.external_select(element, where)
            elif kind in _STATIC:
                self.static_select(element, where)
            elif "options" in element:
                self.options(element["options"], f"{where}/options", _MAX_OPTIONS.get(kind, 100))
            if "initial_option" in element:
                self.option(element["initial_option"], f"{where}/initial_option")
            if kind == "plain_text_input":
                self.text_input(element, where)

    def static_select(self, element: dict[str, Any], where: str) -> None:
        if "options" in element and "option_groups" in element:
            self.fail("invalid additional property: option_groups", where)
        elif "options" in element:
            self.options(element["options"], f"{where}/options", MAX_OPTIONS)
        elif "option_groups" in element:
            self.option_groups(element["option_groups"], f"{where}/option_groups")
        else:
            self.fail("must provide either options or option_groups", where)

    def external_select(self, element: dict[str, Any], where: str) -> None:
        for key in ("options", "option_groups"):
            if key in element:
                self.fail(f"invalid additional property: {key}", where)
        length = element.get("min_query_length", 3)
        if not isinstance(length, int) or isinstance(length, bool) or length < 0:
            self.fail("must be a non-negative integer", f"{where}/min_query_length")
        if not self.external_options:
            self.fail(
                "an external select needs the app's Options Load URL"
                " (Interactivity & Shortcuts: Select Menus)",
                where,
            )

    def text_input(self, element: dict[str, Any], where: str) -> None:
        for key, low in (("min_length", 0), ("max_length", 1)):
            if key not in element:
                continue
            value = element[key]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 3000:
                self.fail(f"must be between {low} and 3000", f"{where}/{key}")
        if "initial_value" in element:
            self.string(element["initial_value"], f"{where}/initial_value", max_len=3000)

    def option_groups(self, groups: Any, where: str) -> None:
        if not self.items(groups, where, max_items=MAX_OPTIONS):
            return
        for index, group in enumerate(groups):
            at = f"{where}/{index}"
            if not isinstance(group, dict):
                self.fail("must be an object", at)
                continue
            label = self.required(group, "label", at)
            if label is not None:
                self.text(label, f"{at}/label", max_len=75, plain_only=True)
            options = self.required(group, "options", at)
            if options is not None:
                self.options(options, f"{at}/options", MAX_OPTIONS)

    def button(self, button: dict[str, Any], where: str) -> None:
        text = self.required(button, "text", where)
        if text is not None:
            self.text(text, f"{where}/text", max_len=75, plain_only=True)
        if "value" in button:
            self.string(button["value"], f"{where}/value", max_len=2000)
        if "url" in button:
            self.string(button["url"], f"{where}/url", max_len=3000)
        if "style" in button and button["style"] not in ("primary", "danger"):
            self.fail("must be a valid enum value", f"{where}/style")
        if "accessibility_label" in button:
            self.string(button["accessibility_label"], f"{where}/accessibility_label", max_len=75)

    def options(self, options: Any, where: str, max_items: int) -> None:
        if not self.items(options, where, max_items=max_items):
            return
        for index, option in enumerate(options):
            self.option(option, f"{where}/{index}")

    def option(self, option: Any, at: str) -> None:
        if not isinstance(option, dict):
            self.fail("must be an object", at)
            return
        text = self.required(option, "text", at)
        if text is not None:
            self.text(text, f"{at}/text", max_len=75)
        value = self.required(option, "value", at)
        if value is not None:
            self.string(value, f"{at}/value", max_len=150)

    def view(self, view: Any, where: str) -> None:
        if not isinstance(view, dict):
            self.fail("must be an object", where)
            return
        kind = self.required(view, "type", where)
        if kind is not None and kind != "modal":
            self.fail(f"unsupported type: {kind}", f"{where}/type")
        title = self.required(view, "title", where)
        if title is not None:
            self.text(title, f"{where}/title", max_len=24, plain_only=True)
        for button in ("submit", "close"):
            if view.get(button) is not None:
                self.text(view[button], f"{where}/{button}", max_len=24, plain_only=True)
        if "callback_id" in view:
            self.string(view["callback_id"], f"{where}/callback_id", max_len=255)
        if "private_metadata" in view:
            self.string(view["private_metadata"], f"{where}/private_metadata", max_len=3000)
        if "external_id" in view:
            self.string(view["external_id"], f"{where}/external_id", max_len=255)
        blocks = self.required(view, "blocks", where)
        if blocks is None:
            return
        self.blocks(blocks, f"{where}/blocks", max_items=VIEW_MAX_BLOCKS)
        if isinstance(blocks, list) and view.get("submit") is None:
            for index, block in enumerate(blocks):
                if isinstance(block, dict) and block.get("type") == "input":
                    self.fail(
                        "must define `submit` to use an `input` block in modals",
                        f"{where}/blocks/{index}/input",
                    )
                    break


# --- the stand-in ------------------------------------------------------------------------

_Handler = Callable[[dict[str, Any]], dict[str, Any]]


class SlackStandIn(LoopbackServer):
    """Slack's Web API, response_urls and Socket Mode for one workspace, on loopback."""

    service = "Slack stand-in"

    def __init__(
        self,
        workspace: Workspace,
        *,
        channel_rate_per_s: float = 1.0,
        channel_burst: int = 3,
        trigger_ttl_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        options_load_url: str | None = None,
        socket_mode_enabled: bool = False,
        method_limits: MethodLimits | None = None,
        latency_ms: float | None = None,
    ) -> None:
        super().__init__()
        self.workspace = workspace
        self.method_limits = method_limits or MethodLimits()
        """Per-method tier budgets (sandbox/standins/slack_limits.py)."""
        self.latency_s = (_env_latency_ms() if latency_ms is None else max(0.0, latency_ms)) / 1000
        """How long every Web API call and response_url post takes, as real ones take
        100-500 ms (``SANDBOX_SLACK_LATENCY_MS`` when not given)."""
        self.options_load_url = options_load_url
        """The app's Options Load URL, where external selects' block_suggestion go."""
        self.socket_mode_enabled = socket_mode_enabled
        """With Socket Mode on, those requests arrive over the socket instead."""
        self._rate = channel_rate_per_s
        self._burst = channel_burst
        self._trigger_ttl = trigger_ttl_s
        self._clock = clock
        self.calls: list[RecordedCall] = []
        self.messages: dict[str, list[Message]] = {}
        self.ephemerals: list[Ephemeral] = []
        self.views: dict[str, OpenView] = {}
        self.rate_limited_count = 0
        self.socket = SocketModeHub(app_id=workspace.app_id)
        self._triggers: dict[str, _Trigger] = {}
        self._hooks: dict[str, _Hook] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._ims: dict[str, SlackChannel] = {}
        self.files: dict[str, UploadedFile] = {}
        self._upload_tokens: dict[str, str] = {}
        self._last_ts_us = 0
        self._changed = asyncio.Event()
        self._methods: dict[str, _Handler] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
        }

    # lifecycle

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{token}", self._handle_response_url)
        app.router.add_post("/upload/{token}", self._handle_upload)
        app.router.add_get("/socket-mode", self.socket.handle)

    async def before_stop(self) -> None:
        await self.socket.close()

    @property
    def api_url(self) -> str:
        """What the bot uses as SLACK_API_URL; slack_sdk appends the method name."""
        return f"{self.base_url}/api/"

    @property
    def external_options(self) -> bool:
        """Whether external selects can get their options (a URL, or Socket Mode)."""
        return bool(self.options_load_url) or self.socket_mode_enabled

    # what tests read

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    def message(self, channel: str, ts: str) -> Message:
        """The message (or thread reply) with this ts; KeyError if there is none."""
        found = self._find(self._channel_id(channel), ts)
        if found is None:
            raise KeyError(f"no message {ts} in {channel}")
        return found

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """A thread's root followed by its replies, in posting order."""
        channel_id = self._channel_id(channel)
        return [
            m
            for m in self.messages.get(channel_id, [])
            if m.ts == thread_ts or m.thread_ts == thread_ts
        ]

    def view_stack(self, view_id: str) -> list[OpenView]:
        """The modal stack ``view_id`` belongs to, root first (views.push adds to it)."""
        root = self.views[view_id].root_view_id
        return [view for view in self.views.values() if view.root_view_id == root]

    async def wait_for(
        self,
        predicate: str | Callable[[RecordedCall], bool],
        *,
        timeout: float = 3.0,  # noqa: ASYNC109 - a deadline for the whole wait, by design
        start: int = 0,
    ) -> RecordedCall:
        """The first call from index ``start`` on that matches (a method name or a test).

        Waits for it if it has not happened yet, so tests never need to sleep.
        """
        matches = (
            (lambda call: call.method == predicate) if isinstance(predicate, str) else predicate
        )
        deadline = asyncio.get_running_loop().time() + timeout
        seen = start
        while True:
            for call in self.calls[seen:]:
                if matches(call):
                    return call
            seen = len(self.calls)
            changed = self._changed
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"the Slack stand-in saw no matching call within {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    # what tests arrange

    def issue_trigger_id(self, *, user: str | None = None, view_id: str | None = None) -> str:
        """A trigger id, as Slack puts in an interaction: usable once, for trigger_ttl_s.

        ``view_id`` says which modal the interaction came from (where views.push lands).
        """
        trigger_id = (
            f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}.{secrets.token_hex(16)}"
        )
        self._triggers[trigger_id] = _Trigger(issued=self._clock(), user=user, view_id=view_id)
        return trigger_id

    def new_response_url(self, *, channel: str, user: str, message_ts: str | None = None) -> str:
        """A response_url served here, as Slack sends with commands and interactions.

        ``message_ts`` names the message the interaction came from, the one that
        ``replace_original`` and ``delete_original`` act on.
        """
        token = secrets.token_urlsafe(18)
        self._hooks[token] = _Hook(
            channel=self._channel_id(channel),
            user=user,
            message_ts=message_ts,
            issued=self._clock(),
        )
        return f"{self.base_url}/response/{token}"

    def fail_next(
        self,
        method: str,
        *,
        error: str | None = None,
        status: int = 200,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``method`` fail (``"response_url"`` works too).

        For example ``status=500``, or ``status=429, retry_after=2``.
        """
        if error is None:
            error = "ratelimited" if status == 429 else "internal_error"
        if status == 429 and retry_after is None:
            retry_after = 1
        failure = _Failure(error=error, status=status, retry_after=retry_after, times=times)
        self._failures.setdefault(method, []).append(failure)

    def add_user_message(
        self,
        channel: str,
        *,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> Message:
        """A message a person posted (no API call); the bot cannot chat.update it."""
        return self._store(
            self._channel_id(channel),
            text=text,
            blocks=blocks or [],
            user=self.workspace.user(user).id,
            thread_ts=thread_ts,
            bot_id=None,
        )

    def close_view(self, view_id: str, *, clear: bool = False) -> None:
        """Close a view, and any pushed above it; the root (or ``clear``) closes the stack."""
        opened = self.views[view_id]
        stack = self.view_stack(view_id)
        if clear or opened.id == opened.root_view_id:
            doomed = stack
        else:
            doomed = stack[[view.id for view in stack].index(view_id) :]
        for view in doomed:
            del self.views[view.id]

    def settle_view_submission(self, view_id: str, ack_body: str) -> None:
        """What Slack does with the app's answer to a view_submission.

        An empty answer closes the view; ``response_action`` ``errors`` keeps it open,
        ``update`` replaces it, ``push`` pushes a new one, ``clear`` closes them all.
        https://docs.slack.dev/surfaces/modals (responding to view_submission)
        """
        if view_id not in self.views:
            return
        answer: Any = None
        if ack_body.strip():
            try:
                answer = json.loads(ack_body)
            except ValueError:
                return
        action = answer.get("response_action") if isinstance(answer, dict) else None
        if action is None:
            self.close_view(view_id)
        elif action == "clear":
            self.close_view(view_id, clear=True)
        elif action in ("update", "push") and isinstance(answer, dict):
            view = answer.get("view")
            if not isinstance(view, dict) or validate_view(
                view, external_options=self.external_options
            ):
                return
            opened = self.views[view_id]
            if action == "update":
                opened.view = self._render_view(
                    opened.id, view, root=opened.root_view_id, previous=opened.previous_view_id
                )
                opened.updates += 1
            elif len(self.view_stack(view_id)) < VIEW_STACK_MAX:
                self._open_view(view, user=opened.user, trigger_id="", parent=opened)

    async def socket_deliver(
        self,
        *,
        type: str,
        payload: dict[str, Any],
        accepts_response_payload: bool = True,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 3.0,  # noqa: ASYNC109 - how long Slack waits for the ack
    ) -> dict[str, Any]:
        """Send an envelope to the connected Socket Mode client; return its ack.

        Raises ``SocketModeError`` if no client is connected or none acks in time.
        """
        return await self.socket.deliver(
            type=type,
            payload=payload,
            accepts_response_payload=accepts_response_payload,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
            timeout=timeout,
        )

    async def wait_for_socket_connection(self, timeout: float = 3.0) -> None:  # noqa: ASYNC109
        await self.socket.wait_for_connection(timeout)

    # HTTP: the Web API

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = {}
        headers: dict[str, str] = {}
        status = 200
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        try:
            args, token = await self._read_args(request, method)
            body = self._answer(method, args, token)
        except _Refusal as refusal:
            body, status, headers = refusal.body(), refusal.status, refusal.headers
        self._record(method, args, body, status)
        return web.json_response(body, status=status, headers=headers)

    async def _read_args(
        self, request: web.Request, method: str
    ) -> tuple[dict[str, Any], str | None]:
        args: dict[str, Any] = dict(request.query)
        posted_token = args.pop("token", None)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    data = json.loads(await request.text())
                except ValueError:
                    raise _Refusal("invalid_json") from None
                if not isinstance(data, dict):
                    raise _Refusal("invalid_json")
                data.pop("token", None)  # a JSON body must carry its token in the header
                args.update(data)
            elif request.content_type in (
                "application/x-www-form-urlencoded",
                "multipart/form-data",
            ):
                form = await request.post()
                args.update({k: v for k, v in form.items() if isinstance(v, str)})
                posted_token = args.pop("token", posted_token)
            else:
                raise _Refusal("invalid_post_type")
        for key in ("blocks", "attachments", "view"):
            if isinstance(args.get(key), str) and args[key]:
                # Not JSON: left as a string, which the method refuses in its own words.
                with contextlib.suppress(ValueError):
                    args[key] = json.loads(args[key])
        token = _bearer(request.headers.get("Authorization", ""))
        if token is None and method != "apps.connections.open":
            token = posted_token
        return args, token

    def _answer(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        handler = self._methods.get(method)
        if handler is None:
            raise _Refusal("unknown_method", extra={"req_method": method})
        self._inject_failure(method)
        self._authenticate(method, token)
        self._check_plan(method)
        self._take_method_token(method)
        return {"ok": True, **handler(args)}

    def _check_plan(self, method: str) -> None:
        """User groups are a paid-plan feature: on a free workspace every ``usergroups.*``
        method answers ``plan_upgrade_required`` (https://slack.com/help/articles/212906697,
        "User groups are available on paid plans"; the error code as Slack's clients map
        it, e.g. slack-ruby-client's ``PlanUpgradeRequiredError``)."""
        if self.workspace.plan == "free" and method.startswith("usergroups."):
            raise _Refusal("plan_upgrade_required")

    def _take_method_token(self, method: str) -> None:
        """The method's tier budget (slack_limits.py): past it, HTTP 429 + Retry-After."""
        wait = self.method_limits.take(method, self._clock())
        if wait is not None:
            self.rate_limited_count += 1
            raise _Refusal("ratelimited", status=429, headers={"Retry-After": str(wait)})

    def _authenticate(self, method: str, token: str | None) -> None:
        if not token:
            raise _Refusal("not_authed")
        ws = self.workspace
        wanted = ws.app_token if method == "apps.connections.open" else ws.bot_token
        if token == wanted:
            return
        if token in (ws.bot_token, ws.app_token):
            raise _Refusal("not_allowed_token_type")
        raise _Refusal("invalid_auth")

    def _inject_failure(self, method: str) -> None:
        queue = self._failures.get(method)
        if not queue:
            return
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
        raise _Refusal(failure.error, status=failure.status, headers=headers)

    def _record(self, method: str, args: dict[str, Any], body: dict[str, Any], status: int) -> None:
        self.calls.append(RecordedCall(method, dict(args), body, status, self._clock()))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # the methods

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        ws = self.workspace
        return {
            "url": f"https://{ws.domain}.slack.com/",
            "team": ws.team_name,
            "user": self._bot_name(),
            "team_id": ws.team_id,
            "user_id": ws.bot_user_id,
            "bot_id": ws.bot_id,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ticket = self.socket.issue_ticket()
        ws_base = "ws" + self.base_url.removeprefix("http")
        return {"url": f"{ws_base}/socket-mode?ticket={ticket}&app_id={self.workspace.app_id}"}

    # files: the external upload flow (files.upload is retired). Sources:
    # https://docs.slack.dev/reference/methods/files.getUploadURLExternal (filename and
    # length required; answers upload_url and file_id; Tier 4),
    # https://docs.slack.dev/reference/methods/files.completeUploadExternal (files: an
    # array of {id, title}; channel_id; thread_ts "never a reply's ts"; "can only be
    # called once"; without it the upload is discarded; Tier 4).
    # Assumed (no upstream error table found): a bad or missing argument is
    # `invalid_arguments`, completing an id never issued, never uploaded or already
    # completed is `file_not_found`, and bytes of another size than `length` are refused
    # by the upload URL with HTTP 400 (the stand-in holds callers to what they declared).

    def _files_get_upload_url_external(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = args.get("filename")
        if not isinstance(filename, str) or not filename.strip():
            raise _Refusal(
                "invalid_arguments", messages=["[ERROR] missing required field: filename"]
            )
        try:
            length = int(args.get("length", ""))
        except (TypeError, ValueError):
            raise _Refusal(
                "invalid_arguments", messages=["[ERROR] missing required field: length"]
            ) from None
        if not 1 <= length <= MAX_FILE_BYTES:
            raise _Refusal("invalid_arguments", messages=["[ERROR] length out of range"])
        file_id = f"F{secrets.token_hex(5).upper()}"
        token = secrets.token_urlsafe(24)
        alt = args.get("alt_txt")
        self.files[file_id] = UploadedFile(
            id=file_id,
            filename=filename,
            length=length,
            alt_txt=alt if isinstance(alt, str) else None,
        )
        self._upload_tokens[token] = file_id
        return {"upload_url": f"{self.base_url}/upload/{token}", "file_id": file_id}

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """The upload URL: raw bytes, or multipart form data with the file in a part."""
        file_id = self._upload_tokens.get(request.match_info["token"])
        if file_id is None:
            return web.Response(status=404, text="not found")
        upload = self.files[file_id]
        if request.content_type == "multipart/form-data":
            form = await request.post()
            parts = [v for v in form.values() if isinstance(v, web.FileField)]
            data = parts[0].file.read() if parts else b""
        else:
            data = await request.read()
        if len(data) != upload.length:
            return web.Response(status=400, text=f"length mismatch: {len(data)} != {upload.length}")
        upload.content = data
        self._record("upload", {"file_id": file_id, "bytes": len(data)}, {"ok": True}, 200)
        return web.Response(text=f"OK - {len(data)}")

    def _files_complete_upload_external(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = args.get("files")
        if isinstance(wanted, str):
            try:
                wanted = json.loads(wanted)
            except ValueError:
                raise _Refusal("invalid_arguments") from None
        if not isinstance(wanted, list) or not wanted:
            raise _Refusal("invalid_arguments", messages=["[ERROR] missing required field: files"])
        uploads: list[tuple[UploadedFile, str | None]] = []
        for item in wanted:
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise _Refusal("invalid_arguments")
            upload = self.files.get(item["id"])
            if upload is None or upload.content is None or upload.completed:
                raise _Refusal("file_not_found")
            title = item.get("title")
            uploads.append((upload, title if isinstance(title, str) else None))
        channel_ref = args.get("channel_id")
        thread_ts = _optional_str(args.get("thread_ts"))
        channel = self._postable(channel_ref) if channel_ref else None
        if channel is not None and thread_ts is not None:
            root = self._find(channel.id, thread_ts)
            if root is None or root.thread_ts is not None:
                raise _Refusal("invalid_thread_ts")
        shared = []
        for upload, title in uploads:
            upload.completed, upload.title = True, title or upload.filename
            shared.append({"id": upload.id, "title": upload.title})
        if channel is not None:
            comment = args.get("initial_comment")
            message = self._store(
                channel.id,
                text=comment if isinstance(comment, str) else "",
                blocks=[],
                user=self.workspace.bot_user_id,
                thread_ts=thread_ts,
                bot_id=self.workspace.bot_id,
            )
            message.files = [
                {"id": u.id, "name": u.filename, "title": u.title, "size": u.length}
                for u, _ in uploads
            ]
            for upload, _ in uploads:
                upload.channel, upload.thread_ts = channel.id, thread_ts
        return {"files": shared}

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._postable(args.get("channel"))
        text, blocks = self._content(args)
        thread_ts = _optional_str(args.get("thread_ts"))
        if thread_ts is not None:
            root = self._find(channel.id, thread_ts)
            if root is None or root.thread_ts is not None:
                raise _Refusal("invalid_thread_ts")
        self._take_rate_token(channel.id)
        message = self._store(
            channel.id,
            text=text,
            blocks=blocks,
            user=self.workspace.bot_user_id,
            thread_ts=thread_ts,
            bot_id=self.workspace.bot_id,
        )
        return {"channel": channel.id, "ts": message.ts, "message": message.to_dict()}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._conversation(args.get("channel"))
        message = self._find(channel.id, _optional_str(args.get("ts")) or "")
        if message is None:
            raise _Refusal("message_not_found")
        if message.user != self.workspace.bot_user_id:
            raise _Refusal("cant_update_message")
        text, blocks = self._content(args)
        if "text" in args:
            message.text = text
        if "blocks" in args:
            message.blocks = blocks
        message.edits += 1
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": message.to_dict(),
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._postable(args.get("channel"))
        user = self._find_user(args.get("user"))
        if user is None:
            raise _Refusal("user_not_found")
        if not self._is_member(channel, user.id):
            raise _Refusal("user_not_in_channel")
        text, blocks = self._content(args)
        ts = self._next_ts()
        self.ephemerals.append(
            Ephemeral(
                channel=channel.id,
                user=user.id,
                text=text,
                blocks=blocks,
                source="chat.postEphemeral",
                ts=ts,
                thread_ts=_optional_str(args.get("thread_ts")),
            )
        )
        return {"message_ts": ts}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._conversation(args.get("channel"))
        message = self._find(channel.id, _optional_str(args.get("message_ts")) or "")
        if message is None:
            raise _Refusal("message_not_found")
        link = (
            f"https://{self.workspace.domain}.slack.com/archives/"
            f"{channel.id}/p{message.ts.replace('.', '')}"
        )
        if message.thread_ts:
            link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(args, new=True)
        trigger_id, trigger = self._exchange_trigger(args)
        opened = self._open_view(view, user=trigger.user or "", trigger_id=trigger_id, parent=None)
        return {"view": opened.view}

    def _views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        view = self._view_arg(args, new=True)
        trigger_id, trigger = self._exchange_trigger(args)
        parent = self.views.get(trigger.view_id or "") or self._latest_view_of(trigger.user)
        if parent is None:
            raise _Refusal("not_found")
        if len(self.view_stack(parent.id)) >= VIEW_STACK_MAX:
            raise _Refusal("push_limit_reached")
        opened = self._open_view(view, user=parent.user, trigger_id=trigger_id, parent=parent)
        return {"view": opened.view}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = _optional_str(args.get("view_id"))
        external_id = _optional_str(args.get("external_id"))
        target = None
        for opened in self.views.values():
            if opened.id == view_id or (external_id and opened.view["external_id"] == external_id):
                target = opened
        if target is None:
            raise _Refusal("not_found")
        expected_hash = _optional_str(args.get("hash"))
        if expected_hash and expected_hash != target.hash:
            raise _Refusal("hash_conflict")
        view = self._view_arg(args, new=False)
        target.view = self._render_view(
            target.id, view, root=target.root_view_id, previous=target.previous_view_id
        )
        target.updates += 1
        return {"view": target.view}

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include_users = _truthy(args.get("include_users"))
        groups = []
        for group in self.workspace.usergroups:
            item: dict[str, Any] = {
                "id": group.id,
                "team_id": self.workspace.team_id,
                "is_usergroup": True,
                "name": group.name,
                "handle": group.handle,
                "description": "",
                "user_count": len(group.users),
            }
            if include_users:
                item["users"] = list(group.users)
            groups.append(item)
        return {"usergroups": groups}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        wanted = args.get("usergroup")
        for group in self.workspace.usergroups:
            if group.id == wanted:
                return {"users": list(group.users)}
        raise _Refusal("no_such_subteam")

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self._find_user(args.get("user"))
        if user is None:
            raise _Refusal("user_not_found")
        return {"user": self._user_json(user)}

    def _users_lookup_by_email(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(args.get("email", "")).lower()
        for user in self.workspace.users:
            if email and user.email.lower() == email:
                return {"user": self._user_json(user)}
        raise _Refusal("users_not_found")

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._conversation(args.get("channel"))
        if channel.id in self._ims:
            user = channel.members[0] if channel.members else ""
            return {"channel": {"id": channel.id, "is_im": True, "user": user, "is_open": True}}
        return {
            "channel": {
                "id": channel.id,
                "name": channel.name,
                "is_channel": not channel.is_private,
                "is_group": channel.is_private,
                "is_im": False,
                "is_private": channel.is_private,
                "is_archived": False,
                "is_member": channel.bot_is_member,
                "context_team_id": self.workspace.team_id,
            }
        }

    # HTTP: response_url

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        args: dict[str, Any] = {}
        headers: dict[str, str] = {}
        status = 200
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        try:
            args = await _read_json_or_payload(request)
            body = self._respond_via_hook(request.match_info["token"], args)
        except _Refusal as refusal:
            body, status, headers = refusal.body(), refusal.status, refusal.headers
        self._record("response_url", args, body, status)
        return web.json_response(body, status=status, headers=headers)

    def _respond_via_hook(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        hook = self._hooks.get(token)
        if hook is None:
            raise _Refusal("invalid_token", status=404)
        if self._clock() - hook.issued > RESPONSE_URL_LIFETIME_S:
            raise _Refusal("expired_url", status=404)
        if hook.uses >= RESPONSE_URL_USES:
            raise _Refusal("used_url", status=404)
        self._inject_failure("response_url")
        original = self._find(hook.channel, hook.message_ts) if hook.message_ts else None
        if _truthy(args.get("delete_original")):
            hook.uses += 1
            if original is not None:
                self.messages[hook.channel].remove(original)
            else:
                self._hook_ephemeral(hook, "", [], args, delete_original=True)
            return {"ok": True}
        try:
            text, blocks = self._content(args)
        except _Refusal as refusal:
            refusal.status = 400
            raise
        hook.uses += 1
        if _truthy(args.get("replace_original")) and original is not None:
            original.text, original.blocks = text, blocks
            original.edits += 1
        elif args.get("response_type") == "in_channel":
            self._take_rate_token(hook.channel)
            self._store(
                hook.channel,
                text=text,
                blocks=blocks,
                user=self.workspace.bot_user_id,
                thread_ts=_optional_str(args.get("thread_ts")),
                bot_id=self.workspace.bot_id,
            )
        else:
            self._hook_ephemeral(hook, text, blocks, args, delete_original=False)
        return {"ok": True}

    def _hook_ephemeral(
        self,
        hook: _Hook,
        text: str,
        blocks: list[dict[str, Any]],
        args: dict[str, Any],
        *,
        delete_original: bool,
    ) -> None:
        self.ephemerals.append(
            Ephemeral(
                channel=hook.channel,
                user=hook.user,
                text=text,
                blocks=blocks,
                source="response_url",
                ts=self._next_ts(),
                thread_ts=_optional_str(args.get("thread_ts")),
                replace_original=_truthy(args.get("replace_original")),
                delete_original=delete_original,
            )
        )

    # helpers

    def _bot_name(self) -> str:
        ws = self.workspace
        return next((u.name for u in ws.users if u.id == ws.bot_user_id), "platform-bot")

    def _find_user(self, ref: Any) -> SlackUser | None:
        return next((u for u in self.workspace.users if u.id == ref), None)

    def _channel_id(self, ref: str) -> str:
        """A channel's id from its id or name; a user id means the bot's DM with them."""
        try:
            return self.workspace.channel(ref).id
        except KeyError:
            user = self._find_user(ref)
            return _im_id(user.id) if user else ref

    def _conversation(self, ref: Any) -> SlackChannel:
        """A channel the bot can see, by id or name; a user id means the bot's DM with them."""
        if not isinstance(ref, str) or not ref:
            raise _Refusal("channel_not_found")
        if ref in self._ims:
            return self._ims[ref]
        user = self._find_user(ref)
        if user is not None:
            im = SlackChannel(id=_im_id(user.id), name=user.id, is_private=True, members=(user.id,))
            self._ims[im.id] = im
            return im
        try:
            channel = self.workspace.channel(ref)
        except KeyError:
            raise _Refusal("channel_not_found") from None
        if channel.is_private and not channel.bot_is_member:
            raise _Refusal("channel_not_found")
        return channel

    def _postable(self, ref: Any) -> SlackChannel:
        channel = self._conversation(ref)
        if not channel.bot_is_member:
            raise _Refusal("not_in_channel")
        return channel

    def _is_member(self, channel: SlackChannel, user_id: str) -> bool:
        if channel.id in self._ims:
            return user_id in (channel.members or ())
        return self.workspace.is_member(channel, user_id)

    def _content(self, args: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        """The text and blocks of a message, refused as Slack refuses them."""
        text = args.get("text")
        text = "" if text is None else str(text)
        blocks: list[dict[str, Any]] = []
        if args.get("blocks") not in (None, "", []):
            if isinstance(args["blocks"], str):
                raise _Refusal("invalid_blocks_format")
            problems = validate_message_blocks(
                args["blocks"], external_options=self.external_options
            )
            if problems:
                raise _Refusal("invalid_blocks", messages=problems)
            blocks = _with_block_ids(args["blocks"])
        attachments = args.get("attachments")
        if isinstance(attachments, str) and attachments:
            raise _Refusal("invalid_attachments")
        if isinstance(attachments, list) and len(attachments) > MESSAGE_MAX_ATTACHMENTS:
            raise _Refusal("too_many_attachments")
        if not text and not blocks and not attachments:
            raise _Refusal("no_text")
        if len(text) > MESSAGE_TEXT_MAX:
            raise _Refusal("msg_too_long")
        return text, blocks

    def _view_arg(self, args: dict[str, Any], *, new: bool) -> dict[str, Any]:
        """The ``view`` argument, checked; a new view may not reuse an open external_id."""
        view = args.get("view")
        problems = validate_view(view, external_options=self.external_options)
        if problems:
            raise _Refusal("invalid_arguments", messages=problems)
        assert isinstance(view, dict)
        external_id = view.get("external_id")
        open_ids = {v.view["external_id"] for v in self.views.values()}
        if new and external_id and external_id in open_ids:
            raise _Refusal("duplicate_external_id")
        return view

    def _exchange_trigger(self, args: dict[str, Any]) -> tuple[str, _Trigger]:
        trigger_id = _optional_str(args.get("trigger_id") or args.get("interactivity_pointer"))
        if not trigger_id:
            raise _Refusal("invalid_arguments", messages=["missing required field: trigger_id"])
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise _Refusal("invalid_trigger_id")
        if trigger.used:
            raise _Refusal("exchanged_trigger_id")
        if self._clock() - trigger.issued > self._trigger_ttl:
            raise _Refusal("expired_trigger_id")
        trigger.used = True
        return trigger_id, trigger

    def _latest_view_of(self, user: str | None) -> OpenView | None:
        mine = [view for view in self.views.values() if view.user == user]
        return mine[-1] if mine else None

    def _open_view(
        self, view: dict[str, Any], *, user: str, trigger_id: str, parent: OpenView | None
    ) -> OpenView:
        view_id = "V" + secrets.token_hex(5).upper()
        root = parent.root_view_id if parent else view_id
        previous = self.view_stack(parent.id)[-1].id if parent else None
        opened = OpenView(
            id=view_id,
            user=user,
            view=self._render_view(view_id, view, root=root, previous=previous),
            trigger_id=trigger_id,
            root_view_id=root,
            previous_view_id=previous,
        )
        self.views[view_id] = opened
        return opened

    def _render_view(
        self, view_id: str, view: dict[str, Any], *, root: str, previous: str | None
    ) -> dict[str, Any]:
        ws = self.workspace
        return {
            "id": view_id,
            "team_id": ws.team_id,
            "type": view["type"],
            "blocks": _with_block_ids(view["blocks"]),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": view["title"],
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": previous,
            "root_view_id": root,
            "app_id": ws.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": ws.team_id,
            "bot_id": ws.bot_id,
        }

    def _take_rate_token(self, channel_id: str) -> None:
        """Spend one message of the channel's allowance, or refuse with 429 Retry-After."""
        now = self._clock()
        bucket = self._buckets.setdefault(channel_id, _Bucket(float(self._burst), now))
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        self.rate_limited_count += 1
        wait = max(1, math.ceil((1 - bucket.tokens) / self._rate))
        raise _Refusal("ratelimited", status=429, headers={"Retry-After": str(wait)})

    def _store(
        self,
        channel_id: str,
        *,
        text: str,
        blocks: list[dict[str, Any]],
        user: str,
        thread_ts: str | None,
        bot_id: str | None,
    ) -> Message:
        message = Message(
            channel=channel_id,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            user=user,
            thread_ts=thread_ts,
            bot_id=bot_id,
            team=self.workspace.team_id,
        )
        self.messages.setdefault(channel_id, []).append(message)
        return message

    def _find(self, channel_id: str, ts: str) -> Message | None:
        return next((m for m in self.messages.get(channel_id, []) if m.ts == ts), None)

    def _next_ts(self) -> str:
        """Unique, increasing message timestamps in Slack's "seconds.micros" form."""
        self._last_ts_us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _user_json(self, user: SlackUser) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "real_name": user.real_name,
            "display_name": user.name,
            "team": self.workspace.team_id,
        }
        if user.email:
            profile["email"] = user.email
        return {
            "id": user.id,
            "team_id": self.workspace.team_id,
            "name": user.name,
            "deleted": False,
            "real_name": user.real_name,
            "tz": user.tz,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "profile": profile,
        }


def _env_latency_ms() -> float:
    """``SANDBOX_SLACK_LATENCY_MS``: milliseconds added to every call (0 if unset or bad)."""
    try:
        return max(0.0, float(os.environ.get("SANDBOX_SLACK_LATENCY_MS", "0") or 0))
    except ValueError:
        return 0.0


def _im_id(user_id: str) -> str:
    return "D" + user_id[1:]


def _with_block_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of the blocks, each with a block_id: Slack makes one up where none is given."""
    return [
        {**block, "block_id": block.get("block_id") or secrets.token_urlsafe(3)} for block in blocks
    ]


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


async def _read_json_or_payload(request: web.Request) -> dict[str, Any]:
    """A response_url body: JSON, or form data with a ``payload`` JSON field."""
    try:
        if request.content_type == "application/json":
            data = json.loads(await request.text())
        else:
            form = await request.post()
            data = json.loads(str(form.get("payload", "")))
    except ValueError:
        raise _Refusal("invalid_payload", status=400) from None
    if not isinstance(data, dict):
        raise _Refusal("invalid_payload", status=400)
    return data
