"""What a feature (command, button, form, executor) sees of the runtime.

Every handler gets a `Context`: who acted, where, a key unique to the request, and the
`Ports` — small Protocols in front of the catalog, Slack, the Run engine and every
external system. Handlers never see Bolt or the HTTP server; what a feature keeps in
its own tables it reaches through objects its `register()` was given.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from catalog import Catalog
from kernel.ids import SlackChannelId, SlackTeamId, SlackUserId
from kernel.interactions import Click, OptionsRequest, Reply, Submission
from kernel.ports.platform import (
    AuditLog,
    Changes,
    Directory,
    Messenger,
    Modals,
    RunControl,
    RunSubmitter,
    ServiceRegistry,
)
from kernel.ports.systems import Adapters


@dataclass(frozen=True)
class Ports:
    """Everything a feature may use, built once by app.bootstrap."""

    catalog: Catalog
    directory: Directory
    audit: AuditLog
    runs: RunSubmitter
    run_control: RunControl
    messenger: Messenger
    modals: Modals
    adapters: Adapters
    changes: Changes
    """The door for every change: approval policy, then a durable Run."""
    services: ServiceRegistry
    """Services registered at run time (new-service)."""


@dataclass(frozen=True)
class Context:
    """One person's request: who, where, a key unique to it, and the ports."""

    user: SlackUserId
    channel: SlackChannelId
    team: SlackTeamId
    request_key: str
    """Unique per Slack request (trigger id or action ts): idempotency key for Runs it starts."""
    ports: Ports

    @property
    def catalog(self) -> Catalog:
        return self.ports.catalog

    @property
    def directory(self) -> Directory:
        return self.ports.directory

    @property
    def audit(self) -> AuditLog:
        return self.ports.audit

    @property
    def runs(self) -> RunSubmitter:
        return self.ports.runs

    @property
    def changes(self) -> Changes:
        return self.ports.changes

    @property
    def adapters(self) -> Adapters:
        return self.ports.adapters


class Button(ABC):
    """Handles clicks on buttons whose action_id is `action_id` (or starts `action_id:`)."""

    action_id: ClassVar[str]

    @abstractmethod
    async def click(self, ctx: Context, click: Click) -> Reply | None:
        """Act on the click; a Reply is shown to the clicker only. Check rights here."""


class Form(ABC):
    """Handles submissions of modals whose callback_id is `callback_id`."""

    callback_id: ClassVar[str]

    @abstractmethod
    async def submit(self, ctx: Context, submission: Submission) -> dict[str, str] | None:
        """Validate and act; return errors by block_id to keep the modal open with them.

        Runs before Slack's 3-second deadline: validate, submit a Run, return. No slow I/O.
        """


class Options(ABC):
    """Serves the options of external selects whose action_id is `action_id`: lists that
    can grow past a static select's 100 (teams, templates, services)."""

    action_id: ClassVar[str]

    @abstractmethod
    async def options(self, ctx: Context, request: OptionsRequest) -> list[dict[str, Any]]:
        """The options (kernel.blocks.option) matching what was typed, best first; the
        first 100 are shown. Answers within Slack's 3 seconds: the catalog, no slow I/O."""
