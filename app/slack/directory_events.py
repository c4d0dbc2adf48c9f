"""Slack's user-group events, applied to the directory's table as they arrive.

Slack sends `subteam_members_changed` when people join or leave a group and
`subteam_updated` when a group changes (https://docs.slack.dev/reference/events/
subteam_members_changed, .../subteam_updated; both need the `usergroups:read` scope).
Bolt acks each event before the handler runs, so applying it never holds Slack up.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.db import DatabaseUnavailable
from engine.directory import SlackDirectory

log = logging.getLogger(__name__)


class DirectoryEvents:
    """The Events API handlers that keep user-group membership current."""

    def __init__(self, directory: SlackDirectory) -> None:
        self.directory = directory

    async def on_subteam(self, event: dict[str, Any]) -> None:
        try:
            changed = await self.directory.apply_event(event)
        except DatabaseUnavailable:
            # Not lost for long: the next full refresh reads every group again.
            log.warning("user-group event not applied: database unavailable")
            return
        log.info(
            "user-group event",
            extra={
                "event": event.get("type"),
                "usergroup": event.get("subteam_id") or (event.get("subteam") or {}).get("id"),
                "applied": changed,
            },
        )
