"""The ports of the platform itself: audit log, directory, Runs, changes, the
service registry, messages and modals. Features see these Protocols; the engine and
app implement them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kernel.actions import (
    Action,
    SubmittedRun,
)
from kernel.ids import (
    EnvironmentName,
    RunId,
    ServiceName,
    SlackChannelId,
    SlackTeamId,
    SlackUserId,
)
from kernel.interactions import Reply


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log: who did what, to which service, and how it ended."""

    at: datetime
    actor: SlackUserId
    event: str
    service: ServiceName | None = None
    environment: EnvironmentName | None = None
    run_id: RunId | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        actor: str,
        event: str,
        *,
        action: Action | None = None,
        run_id: str | None = None,
        detail: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """An entry about `action` (its service, environment and summary filled in)."""
        described = {"action": action.summary()} if action is not None else {}
        return cls(
            at=at or datetime.now(UTC),
            actor=SlackUserId(actor),
            event=event,
            service=action.affected_service() if action else None,
            environment=action.affected_environment() if action else None,
            run_id=RunId(run_id) if run_id else None,
            detail={**described, **(detail or {})},
        )


class AuditLog(Protocol):
    """Append-only record of every change and every refusal."""

    async def record(self, entry: AuditEntry) -> None: ...

    async def recent(
        self,
        *,
        service: ServiceName | None = None,
        limit: int = 20,
        actor: SlackUserId | None = None,
        event: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Newest first. `event` matches the event name or its start (`secret.` matches
        `secret.written`); `since` inclusive, `until` exclusive; `offset` skips that many
        (pages)."""
        ...


class Directory(Protocol):
    """Who people are: Slack user-group membership (engine.directory keeps it in the
    database, current through Slack's events), for role checks."""

    async def usergroup_members(self, usergroup_id: str) -> frozenset[SlackUserId]: ...

    async def email_of(self, user: SlackUserId) -> str | None: ...

    async def channel_name(self, channel_id: str) -> str | None:
        """`payments` for C01PAYMENTS; None if Slack does not say."""
        ...


class RunSubmitter(Protocol):
    """Turns an Action into a durable Run (idempotent on `idempotency_key`)."""

    async def submit(
        self,
        action: Action,
        *,
        requested_by: SlackUserId,
        idempotency_key: str,
        reply_channel: SlackChannelId | None = None,
    ) -> SubmittedRun: ...


@dataclass(frozen=True)
class Proposal:
    """What `Changes.propose` answers: the Run, and whether it waits for approval."""

    run_id: RunId
    created: bool
    """False when this request (same idempotency key) was already proposed."""
    approval_id: str | None = None
    """Set when the Run waits for approval; the approval card carries this id only."""
    rule: str | None = None
    """The approval policy that applies, or `risk: high` default, or None."""
    expires_at: datetime | None = None
    break_glass: bool = False


class Changes(Protocol):
    """The one door for every change: policy decides whether it runs now or waits for
    approval; either way it becomes a durable Run (idempotent on `idempotency_key`)."""

    async def propose(
        self,
        action: Action,
        *,
        requested_by: SlackUserId,
        idempotency_key: str,
        reply_channel: SlackChannelId | None = None,
        announce_channel: str | None = None,
        reason: str | None = None,
        break_glass: bool = False,
        thread_key: str | None = None,
    ) -> Proposal:
        """`announce_channel` also gets the progress message (e.g. the service's channel).
        With `thread_key` (the Messenger key of one of our messages in `reply_channel`,
        e.g. an alert's thread), the approval card and the progress message are replies
        in that message's thread instead of new channel messages.
        Raises ChangeRefused with a message for the requester."""
        ...


class ServiceRegistry(Protocol):
    """Services added at run time (by new-service), kept in the database and merged into
    the catalog on every replica."""

    async def register(
        self, name: ServiceName, definition: dict[str, Any], *, by: SlackUserId
    ) -> bool:
        """Add (or replace) the service; True if it was new. `definition` is a catalog
        Service (owner, environments, ...)."""
        ...

    async def unregister(self, name: ServiceName, *, by: SlackUserId) -> bool:
        """Remove a registered service (never one from platform.yml); True if it existed."""
        ...

    async def record_removal(
        self,
        name: ServiceName,
        definition: dict[str, Any],
        *,
        remains: Sequence[str],
        by: SlackUserId,
    ) -> None:
        """Keep `name` in the catalog while it is being removed, saying what is still there
        (its `removal`); made from `definition` if it never got registered. ValueError for
        a service of platform.yml, which is never removed."""
        ...


class Messenger(Protocol):
    """Posting to Slack through the durable outbox; `key` names a message for updates,
    and posting with a key that was posted before updates that message instead."""

    async def post(
        self,
        channel: str,
        *,
        text: str,
        blocks: Sequence[dict[str, Any]] = (),
        key: str | None = None,
        thread_key: str | None = None,
    ) -> None: ...

    async def update(
        self, key: str, *, text: str, blocks: Sequence[dict[str, Any]] = ()
    ) -> None: ...

    async def ephemeral(
        self, channel: str, user: SlackUserId, *, text: str, blocks: Sequence[dict[str, Any]] = ()
    ) -> None: ...


class MergeRequestHook(Protocol):
    """Who handles GitLab merge request events (the GitLab webhook authenticates them and
    finds the service; environments makes preview environments of them)."""

    async def merge_request(self, service: str, body: dict[str, Any]) -> str:
        """Act on one "Merge Request Hook" body; what was done, for the webhook's answer."""
        ...


class Modals(Protocol):
    """Opening modals: direct, not queued, because a trigger id lives for 3 seconds."""

    async def open(self, trigger_id: str, view: dict[str, Any]) -> str: ...

    async def update(self, view_id: str, view: dict[str, Any], *, hash: str | None = None) -> bool:
        """Replace an open modal; with `hash` (from the interaction), only if nobody
        changed it since: False when Slack refuses a stale one (`hash_conflict`) or the
        modal is gone."""
        ...


class RunControl(Protocol):
    """What people may do to a Run once it exists."""

    async def retry(self, run_id: RunId, *, by: SlackUserId) -> bool: ...

    async def requested_by(self, run_id: RunId) -> SlackUserId | None: ...

    async def action(self, run_id: RunId) -> Action | None:
        """The Action a Run carries; None if there is no such Run (or kind)."""
        ...

    async def close(self, run_id: RunId, *, by: SlackUserId, reason: str) -> bool:
        """Close a failed Run for good (e.g. cleaned up instead of retried); its Retry
        button goes away. False if it is not failed."""
        ...

    async def outputs(self, run_id: RunId) -> dict[str, dict[str, Any]]:
        """What each done step of a Run returned, by step name (empty for no such Run)."""
        ...


@dataclass(frozen=True)
class Asker:
    """Who asks for something, from where, with the key unique to their request (the
    idempotency key of any Run it starts)."""

    user: SlackUserId
    channel: SlackChannelId
    team: SlackTeamId
    request_key: str


class Releases(Protocol):
    """What other features may ask of releases: the alert thread's Rollback button."""

    async def rollback(
        self,
        asker: Asker,
        *,
        service: str,
        env: str,
        reason: str | None = None,
        thread_key: str | None = None,
    ) -> Reply:
        """Plan and propose a rollback exactly as `/platform rollback` does (rights,
        approvals, Argo CD's auto-sync); every refusal is a Reply, never an exception.
        `thread_key`: its card and progress go in that thread of `asker.channel`."""
        ...

    async def auto_rollback(
        self,
        *,
        service: str,
        env: str,
        reason: str,
        idempotency_key: str,
        reply_channel: SlackChannelId | None = None,
    ) -> RunId:
        """The bot's own rollback, decided by an environment's policy (`auto_rollback`):
        planned like `/platform rollback` (to the previous revision; on Argo CD turning
        automated sync off first), submitted as a Run requested by the bot, without an
        approval (the policy is it). Idempotent on `idempotency_key`. Raises UsageError
        when there is nothing to roll back to."""
        ...
