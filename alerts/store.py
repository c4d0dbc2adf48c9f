"""What the alert buttons may ask of the alert groups the bot keeps (the `AlertGroups` port).

The groups live in the database, which features never see; `bot.alert_intake` implements
this Protocol and every change through it re-renders the group's parent message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from bot.domain import SlackUserId

if TYPE_CHECKING:  # bot.ports names AlertGroups as the type of its `alerts` port
    from bot.ports import Context


@dataclass(frozen=True)
class AlertGroupInfo:
    """One alert group as the buttons need it."""

    id: str
    channel: str
    status: str
    """firing or resolved."""
    common_labels: dict[str, str]
    service: str | None
    """The catalog service it belongs to (its `service` label), if that is in the catalog."""
    team: str | None
    """The owning team: the service's owner, or the `team` label if that team exists."""
    silence_id: str | None
    expressions: tuple[str, ...]
    """The distinct PromQL expressions of its alerts (from their generator URLs)."""


class AlertGroups(Protocol):
    """Alert groups by id (the only thing an alert button's value carries)."""

    async def group(self, group_id: str) -> AlertGroupInfo | None: ...

    async def acknowledge(self, group_id: str, *, by: SlackUserId) -> bool:
        """Record who acked and when; False if the group does not exist."""
        ...

    async def record_silence(
        self, group_id: str, *, silence_id: str, until: datetime, by: SlackUserId
    ) -> None: ...

    async def clear_silence(self, group_id: str, *, by: SlackUserId) -> str | None:
        """Forget the group's silence; returns its id (None if it had none)."""
        ...


def alert_groups(ctx: Context) -> AlertGroups:
    """The `AlertGroups` port of this bot."""
    return ctx.ports.alerts


def thread_key(group_id: str) -> str:
    """The outbox message key of a group's parent message; replies use it as thread key."""
    return f"alert:{group_id}"
