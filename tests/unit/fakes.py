"""In-memory fakes of the ports in `kernel.ports`, and a CommandContext built on them.

They are small honest stand-ins of the Protocols (DESIGN.md, "ports and fakes"): a
Directory that knows a few user groups and e-mail addresses, an AuditLog kept in a
list, a RunSubmitter that records what it was asked and is idempotent on its key.
The default people mirror the sandbox workspace (sandbox/app/stack.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from catalog import Catalog
from catalog.load import load_platform_model
from features.kit.commands import CommandContext
from features.kit.context import Ports
from features.kit.registry import FeatureRegistry
from kernel.actions import Action, SubmittedRun
from kernel.errors import ChangeRefused
from kernel.ids import RunId, ServiceName, SlackChannelId, SlackTeamId, SlackUserId
from kernel.ports.platform import AuditEntry, Proposal
from kernel.ports.systems import Adapters

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_CONFIG = REPO_ROOT / "sandbox" / "app" / "sample" / "platform.yml"

ALICE, BOB, CAROL, DAVE, ERIN = (
    SlackUserId(u) for u in ("U01ALICE", "U02BOB", "U03CAROL", "U04DAVE", "U05ERIN")
)

SAMPLE_CHANNELS = {
    "C01PAYMENTS": "payments",
    "C02SEARCH": "search",
    "C03PLATFORM": "platform",
    "C04AUDIT": "platform-audit",
}
SAMPLE_USERGROUPS: dict[str, set[str]] = {
    "S01PAYMENTS": {ALICE},
    "S02SRE": {BOB},
    "S03PLATFORM": {DAVE},
}
SAMPLE_EMAILS: dict[str, str] = {
    ALICE: "alice@example.com",
    BOB: "bob@example.com",
    CAROL: "carol@example.com",
    DAVE: "dave@example.com",
    ERIN: "erin@example.com",
}


class FakeDirectory:
    """`Directory` over two dicts: user group id -> user ids, and user id -> e-mail."""

    def __init__(
        self,
        usergroups: Mapping[str, Iterable[str]] | None = None,
        emails: Mapping[str, str] | None = None,
    ) -> None:
        self.usergroups = {g: set(users) for g, users in (usergroups or {}).items()}
        self.emails = dict(emails or {})
        self.asked_groups: list[str] = []

    async def usergroup_members(self, usergroup_id: str) -> frozenset[SlackUserId]:
        # Slack answers `no_such_subteam` for an unknown group; SlackDirectory maps it to empty.
        self.asked_groups.append(usergroup_id)
        return frozenset(SlackUserId(u) for u in self.usergroups.get(usergroup_id, ()))

    async def email_of(self, user: SlackUserId) -> str | None:
        return self.emails.get(user)

    async def channel_name(self, channel_id: str) -> str | None:
        return SAMPLE_CHANNELS.get(channel_id)


class FakeAuditLog:
    """`AuditLog` in a list: appended in order, read newest first, filtered by service."""

    def __init__(self, entries: Iterable[AuditEntry] = ()) -> None:
        self.entries: list[AuditEntry] = list(entries)
        """Oldest first, as recorded."""

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

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
        matching = [
            e
            for e in reversed(self.entries)
            if (service is None or e.service == service)
            and (actor is None or e.actor == actor)
            and (event is None or e.event.startswith(event))
            and (since is None or e.at >= since)
            and (until is None or e.at < until)
        ]
        return matching[offset : offset + limit]


@dataclass(frozen=True)
class SubmittedAction:
    """One call of `FakeRuns.submit`, as it was asked."""

    action: Action
    requested_by: SlackUserId
    idempotency_key: str
    reply_channel: SlackChannelId | None


class FakeRuns:
    """`RunSubmitter` that records submissions; a repeated key returns the first Run."""

    def __init__(self) -> None:
        self.submissions: list[SubmittedAction] = []
        """Every call, including repeats."""
        self.runs: dict[str, tuple[RunId, SubmittedAction]] = {}
        """The Runs that exist, by idempotency key."""

    async def submit(
        self,
        action: Action,
        *,
        requested_by: SlackUserId,
        idempotency_key: str,
        reply_channel: SlackChannelId | None = None,
    ) -> SubmittedRun:
        submission = SubmittedAction(action, requested_by, idempotency_key, reply_channel)
        self.submissions.append(submission)
        existing = self.runs.get(idempotency_key)
        if existing is not None:
            return SubmittedRun(existing[0], created=False)
        run_id = RunId(f"run-{len(self.runs) + 1}")
        self.runs[idempotency_key] = (run_id, submission)
        return SubmittedRun(run_id, created=True)


@functools.cache
def sample_catalog() -> Catalog:
    """The catalog of sandbox/app/sample/platform.yml (read once; Catalog is immutable)."""
    return Catalog(load_platform_model(SAMPLE_CONFIG))


def sample_directory() -> FakeDirectory:
    """The sandbox workspace's user groups and e-mail addresses."""
    return FakeDirectory(SAMPLE_USERGROUPS, SAMPLE_EMAILS)


class FakeMessenger:
    """Records what would be posted."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str]] = []

    async def post(
        self, channel: str, *, text: str, blocks: Any = (), key: Any = None, thread_key: Any = None
    ) -> None:
        self.posts.append((channel, text))

    async def update(self, key: str, *, text: str, blocks: Any = ()) -> None:
        self.posts.append((key, text))

    async def ephemeral(self, channel: str, user: Any, *, text: str, blocks: Any = ()) -> None:
        self.posts.append((channel, text))


class FakeModals:
    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self.updates: list[tuple[str, str | None]] = []

    async def open(self, trigger_id: str, view: dict[str, Any]) -> str:
        self.opened.append(view)
        return f"V{len(self.opened)}"

    async def update(self, view_id: str, view: dict[str, Any], *, hash: str | None = None) -> bool:
        self.opened.append(view)
        self.updates.append((view_id, hash))
        return True


class FakeChanges:
    """`Changes` without policy: every proposal becomes a FakeRuns submission at once.

    Set `waiting` to make proposals come back as waiting for approval instead, and
    `refuse` to a message to make them refused (as a lock or a missing reason would)."""

    def __init__(self, runs: FakeRuns) -> None:
        self.runs = runs
        self.proposals: list[dict[str, Any]] = []
        self.waiting = False
        self.refuse: str | None = None

    async def propose(self, action: Action, **kwargs: Any) -> Proposal:
        if self.refuse is not None:
            raise ChangeRefused(self.refuse)
        self.proposals.append({"action": action, **kwargs})
        submitted = await self.runs.submit(
            action,
            requested_by=kwargs["requested_by"],
            idempotency_key=kwargs["idempotency_key"],
            reply_channel=kwargs.get("reply_channel"),
        )
        return Proposal(
            run_id=submitted.run_id,
            created=submitted.created,
            approval_id="approval-1" if self.waiting else None,
            rule="prod-changes" if self.waiting else None,
        )


class FakeServiceRegistry:
    """Registers services straight into the catalog it is given."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.registered: dict[str, dict[str, Any]] = {}

    async def register(self, name: Any, definition: dict[str, Any], *, by: Any) -> bool:
        from catalog.model import Service

        self.catalog.add_service(name, Service.model_validate(definition))
        new = name not in self.registered
        self.registered[name] = definition
        return new

    async def unregister(self, name: Any, *, by: Any) -> bool:
        self.catalog.remove_service(name)
        return self.registered.pop(name, None) is not None

    async def record_removal(
        self, name: Any, definition: dict[str, Any], *, remains: Any, by: Any
    ) -> None:
        from catalog.model import Service

        base = dict(self.registered.get(name) or definition)
        base["removal"] = {"requested_by": by, "remains": list(remains)}
        self.catalog.add_service(name, Service.model_validate(base))
        self.registered[name] = base


class FakeApprovalDesk:
    """An approval desk holding requests in a dict; votes are recorded, never checked
    (the real checks are tested end to end against the real desk)."""

    def __init__(self) -> None:
        self.requests: dict[str, Any] = {}
        self.votes: list[tuple[str, str, bool, str | None]] = []

    async def vote(
        self, approval_id: str, *, voter: Any, approve: bool, reason: str | None = None
    ) -> Any:
        from features.approvals.request import Answer

        if approval_id not in self.requests:
            return Answer(text="That approval request does not exist.")
        self.votes.append((approval_id, voter, approve, reason))
        return Answer(text="Vote recorded.", recorded=True)

    async def refusal(self, approval_id: str, *, voter: Any, approve: bool) -> str | None:
        return None if approval_id in self.requests else "That approval request does not exist."

    async def request(self, approval_id: str) -> Any:
        return self.requests.get(approval_id)

    async def listing(self, user: Any) -> tuple[list[Any], list[Any]]:
        mine = [r for r in self.requests.values() if r.requested_by == user]
        return [r for r in self.requests.values() if r.requested_by != user], mine

    async def sweep(self, stop: Any) -> None:
        return None


class FakeAlertGroups:
    """Alert groups in a dict (AlertGroupInfo by id); acks and silences recorded."""

    def __init__(self) -> None:
        self.groups: dict[str, Any] = {}
        self.acks: list[tuple[str, str]] = []
        self.silences: dict[str, str] = {}

    async def group(self, group_id: str) -> Any:
        return self.groups.get(group_id)

    async def acknowledge(self, group_id: str, *, by: Any) -> bool:
        if group_id not in self.groups:
            return False
        self.acks.append((group_id, by))
        return True

    async def record_silence(self, group_id: str, *, silence_id: str, until: Any, by: Any) -> None:
        self.silences[group_id] = silence_id

    async def clear_silence(self, group_id: str, *, by: Any) -> str | None:
        return self.silences.pop(group_id, None)


class FakeRunControl:
    """Knows the Runs given to it: run id -> (requester, Action, state)."""

    def __init__(self) -> None:
        self.runs: dict[str, tuple[str, Action, str]] = {}

    async def retry(self, run_id: Any, *, by: Any) -> bool:
        return False

    async def requested_by(self, run_id: Any) -> Any:
        found = self.runs.get(run_id)
        return found[0] if found else None

    async def action(self, run_id: Any) -> Action | None:
        found = self.runs.get(run_id)
        return found[1] if found else None

    async def outputs(self, run_id: Any) -> dict[str, dict[str, Any]]:
        return {}

    async def close(self, run_id: Any, *, by: Any, reason: str) -> bool:
        found = self.runs.get(run_id)
        if found is None or found[2] != "failed":
            return False
        self.runs[run_id] = (found[0], found[1], "cancelled")
        return True


def make_context(
    user: str = ALICE,
    catalog: Catalog | None = None,
    *,
    directory: FakeDirectory | None = None,
    audit: FakeAuditLog | None = None,
    runs: FakeRuns | None = None,
    changes: FakeChanges | None = None,
    adapters: Adapters | None = None,
    channel: str = "C0PAYMENTS",
    team: str = "T0SANDBOX",
    request_key: str = "trigger-1",
) -> CommandContext:
    """A Context on the sample catalog and fresh fakes of every port."""
    catalog = catalog if catalog is not None else sample_catalog()
    runs = runs if runs is not None else FakeRuns()
    return CommandContext(
        user=SlackUserId(user),
        channel=SlackChannelId(channel),
        team=SlackTeamId(team),
        request_key=request_key,
        ports=Ports(
            catalog=catalog,
            directory=directory if directory is not None else sample_directory(),
            audit=audit if audit is not None else FakeAuditLog(),
            runs=runs,
            run_control=FakeRunControl(),
            messenger=FakeMessenger(),
            modals=FakeModals(),
            adapters=adapters if adapters is not None else Adapters(),
            changes=changes if changes is not None else FakeChanges(runs),
            services=FakeServiceRegistry(catalog),
        ),
    )


def feature_registry(
    *, desk: FakeApprovalDesk | None = None, groups: FakeAlertGroups | None = None
) -> FeatureRegistry:
    """Every feature registered as the bot registers them, on fakes where a feature needs
    its own objects (the approval desk, the alert groups)."""
    from types import SimpleNamespace

    import features.access
    import features.alerts
    import features.approvals
    import features.general
    import features.new_service
    import features.pipelines
    import features.releases
    import features.secrets

    async def idle(stop: Any) -> None:
        return None

    registry = FeatureRegistry()
    features.general.register(registry)
    features.releases.register(registry)
    features.approvals.register(
        registry,
        SimpleNamespace(desk=desk or FakeApprovalDesk(), gate=None),  # type: ignore[arg-type]
    )
    alerts = SimpleNamespace(
        receiver=SimpleNamespace(receive=None),
        worker=SimpleNamespace(work=idle),
        groups=groups or FakeAlertGroups(),
    )
    features.alerts.register(registry, alerts, releases=FakeReleases())  # type: ignore[arg-type]
    features.new_service.register(registry)
    features.pipelines.register(registry, SimpleNamespace(receive=None))  # type: ignore[arg-type]
    features.secrets.register(registry, SimpleNamespace(sweep=idle))  # type: ignore[arg-type]
    access = SimpleNamespace(on_revoke_due=idle, on_warn_due=idle)
    features.access.register(registry, access)  # type: ignore[arg-type]
    return registry


class FakeReleases:
    """`Releases` that records the rollbacks asked for and answers that it was queued."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str | None]] = []
        self.threads: list[str | None] = []

    async def rollback(
        self,
        asker: Any,
        *,
        service: str,
        env: str,
        reason: str | None = None,
        thread_key: str | None = None,
    ) -> Any:
        from kernel.interactions import Reply

        self.asked.append((service, env, reason))
        self.threads.append(thread_key)
        return Reply(text=f"rollback of {service} in {env} asked")

    async def auto_rollback(
        self,
        *,
        service: str,
        env: str,
        reason: str,
        idempotency_key: str,
        reply_channel: Any = None,
    ) -> Any:
        self.asked.append((service, env, reason))
        return f"auto-{idempotency_key}"
