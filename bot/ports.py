"""What a feature (command, button, form, executor) sees of the runtime.

Features in commands/, approvals/ and alerts/ get a `Context`: who acted, where, and
the `Ports` — small Protocols in front of the catalog, Slack, the Run engine and every
external system. They never see the database, Bolt or the HTTP server.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from adapters import Adapters
from alerts.store import AlertGroups
from approvals.request import ApprovalDesk
from bot.domain import (
    AuditLog,
    Changes,
    Click,
    Directory,
    Messenger,
    Modals,
    Reply,
    RunControl,
    RunSubmitter,
    ServiceRegistry,
    SlackChannelId,
    SlackTeamId,
    SlackUserId,
    Submission,
)
from catalog import Catalog


@dataclass(frozen=True)
class Ports:
    """Everything a feature may use, built once by bot.bootstrap."""

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
    approvals: ApprovalDesk
    """Where approval votes go; every check happens there, at click time."""
    alerts: AlertGroups
    """Alert groups (threads) by id, for the alert buttons."""


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
