"""The types every room shares: identifiers, Actions, replies and the ports commands use.

Feature packages import this module and nothing else of `bot/`, so it must stay free
of I/O, of the database and of Slack wiring.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, NewType, Protocol

from pydantic import BaseModel, ConfigDict

ServiceName = NewType("ServiceName", str)
TeamName = NewType("TeamName", str)
EnvironmentName = NewType("EnvironmentName", str)
SlackUserId = NewType("SlackUserId", str)
SlackChannelId = NewType("SlackChannelId", str)
SlackTeamId = NewType("SlackTeamId", str)
RunId = NewType("RunId", str)


class Action(BaseModel):
    """One exact change to the platform, e.g. `Rollback(service="checkout", env="prod")`.

    An approval is bound to the fingerprint: change any field and it needs a new one.
    Subclasses set `kind` (a stable name stored in the database) and `summary()`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = "action"

    def fingerprint(self) -> str:
        """A hash of exactly what will change: the kind and every field, canonically."""
        canonical = json.dumps(
            {"kind": self.kind, "fields": self.model_dump(mode="json")},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def summary(self) -> str:
        """One line for people: what this Action does."""
        fields = ", ".join(f"{k}={v}" for k, v in self.model_dump(mode="json").items())
        return f"{self.kind}({fields})"

    def affected_service(self) -> ServiceName | None:
        """The service this Action changes, if any (its `service` field, by convention)."""
        value = getattr(self, "service", None)
        return ServiceName(value) if isinstance(value, str) else None

    def affected_environment(self) -> EnvironmentName | None:
        """The environment this Action changes, if any (its `env` field, by convention)."""
        value = getattr(self, "env", None)
        return EnvironmentName(value) if isinstance(value, str) else None

    def lock_key(self) -> str | None:
        """Runs with the same lock key never overlap (e.g. `checkout/prod` for deploys and
        rollbacks); a second one is refused while the first waits or runs. None: no lock."""
        return None

    def change_lines(self) -> list[str]:
        """What exactly will change, one mrkdwn line each, for approval cards and progress
        (e.g. `image: registry/checkout:1.4.2 -> 1.4.1 (revision 7 -> 8)`)."""
        return [self.summary()]


@dataclass(frozen=True)
class Reply:
    """What a command shows the person who typed it.

    `text` is mrkdwn already escaped by the command; `blocks` are Block Kit dicts.
    Ephemeral replies are seen only by the requester.
    """

    text: str
    blocks: Sequence[dict[str, Any]] = ()
    ephemeral: bool = True


class UsageError(Exception):
    """Bad command input; the message is shown to the user as is (already escaped mrkdwn)."""

    def __init__(self, message: str, *, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


class StepFailed(Exception):
    """Raised by a step to fail with a message meant for people (no stack trace shown)."""


class TryAgainLater(Exception):
    """A dependency (usually the database) is down; the user is asked to try again."""


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


class AuditLog(Protocol):
    """Append-only record of every change and every refusal."""

    async def record(self, entry: AuditEntry) -> None: ...

    async def recent(
        self, *, service: ServiceName | None = None, limit: int = 20
    ) -> list[AuditEntry]: ...


class Directory(Protocol):
    """Who people are: Slack user-group membership, cached briefly, for role checks."""

    async def usergroup_members(self, usergroup_id: str) -> frozenset[SlackUserId]: ...

    async def email_of(self, user: SlackUserId) -> str | None: ...

    async def channel_name(self, channel_id: str) -> str | None:
        """`payments` for C01PAYMENTS; None if Slack does not say."""
        ...


@dataclass(frozen=True)
class SubmittedRun:
    """What `RunSubmitter.submit` answers: the Run and whether it already existed."""

    run_id: RunId
    created: bool


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


async def _no_report(detail: str) -> None:
    return None


@dataclass
class StepContext:
    """What a step sees: its Run, the Action, and what earlier steps returned.

    `report(detail)` shows a line of live detail under the running step in the progress
    message (e.g. `3/4 replicas updated, 2 ready`); updates are coalesced by the outbox.
    """

    run_id: RunId
    action: Action
    requested_by: SlackUserId
    outputs: dict[str, dict[str, Any]]
    attempt: int
    report: Callable[[str], Awaitable[None]] = _no_report


StepFunction = Callable[[StepContext], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Step:
    """One checkpointed unit of a Run. It must be idempotent: check, then change.

    A crash after the change but before the checkpoint runs it again.
    """

    name: str
    title: str
    run: StepFunction


class Executor(Protocol):
    """Turns an Action into the steps that carry it out (with adapters bound in).

    Optional extras an executor may define (the Run engine looks for them):
    - `async def stale_reason(self, action) -> str | None`: why the Action no longer
      matches the live system (prod moved since it was planned); checked before an
      approved Run starts and on every approval click.
    - `def failure_buttons(self, action) -> list[tuple[str, str]]`: extra
      (action_id, label) buttons on a failed Run's progress message, valued the Run id.
    """

    action_type: type[Action]

    def steps(self, action: Action) -> Sequence[Step]: ...


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


class ChangeRefused(Exception):
    """A change that may not even be asked for (locked, reason missing, no right to break
    glass); the message is for the requester, already escaped mrkdwn."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
    ) -> Proposal:
        """`announce_channel` also gets the progress message (e.g. the service's channel).
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


@dataclass(frozen=True)
class Click:
    """Someone pressed a button. Only `value` comes from the message, and it is untrusted."""

    user: SlackUserId
    team: SlackTeamId
    action_id: str
    value: str
    channel: SlackChannelId | None
    message_ts: str | None
    response_url: str | None
    trigger_id: str | None


@dataclass(frozen=True)
class Submission:
    """Someone submitted a modal: its inputs by block id, and our private metadata."""

    user: SlackUserId
    team: SlackTeamId
    callback_id: str
    view_id: str
    private_metadata: str
    values: dict[str, Any]
    """block_id -> the input's value: a string, a list of strings, or None."""
    trigger_id: str | None


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


class Modals(Protocol):
    """Opening modals: direct, not queued, because a trigger id lives for 3 seconds."""

    async def open(self, trigger_id: str, view: dict[str, Any]) -> str: ...

    async def update(self, view_id: str, view: dict[str, Any]) -> None: ...


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
