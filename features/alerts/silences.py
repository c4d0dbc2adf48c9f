"""The Silence form's work, done after Slack has its answer.

Slack closes a modal only when the app answers the `view_submission` within 3 seconds,
and Alertmanager may take longer than that (or be down). So the form checks what it can
without asking anyone (the group, the clicker's rights, the duration, that Alertmanager
is configured), schedules this work as a durable timer (engine.timers: once, across
restarts and replicas) and answers at once; the timer creates the silence and says in
the alert's thread what came of it: silenced until when, or why not.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.db import Database
from engine.timers import Timer, schedule
from features.alerts.groups import AlertGroupInfo, AlertGroups, thread_key
from features.alerts.threads import when
from features.kit.context import Ports
from kernel.blocks import message_text
from kernel.errors import AdapterError
from kernel.ids import ServiceName, SlackUserId
from kernel.mrkdwn import escape, truncate
from kernel.ports.platform import AuditEntry
from kernel.ports.systems import Matcher

log = logging.getLogger(__name__)

KIND = "alert.silence"


class SilenceLater:
    """Schedules a requested silence, and creates it when its timer fires."""

    def __init__(self, db: Database, groups: AlertGroups, ports: Ports) -> None:
        self.db, self.groups, self.ports = db, groups, ports

    async def ask(
        self,
        *,
        key: str,
        group_id: str,
        user: SlackUserId,
        duration: timedelta,
        author: str,
        comment: str,
    ) -> None:
        """Durably ask for the silence (a redelivered submission, same `key`, asks once)."""
        payload = {
            "group": group_id,
            "user": str(user),
            "seconds": int(duration.total_seconds()),
            "author": author,
            "comment": comment,
        }
        now = datetime.now(UTC)
        await self.db.run(
            lambda s: schedule(s, kind=KIND, key=f"{KIND}:{key}", due_at=now, payload=payload)
        )

    async def on_due(self, timer: Timer) -> None:
        """Create the silence in Alertmanager; say in the thread what happened."""
        payload: dict[str, Any] = timer.payload
        group = await self.groups.group(str(payload.get("group")))
        if group is None:
            return
        user = SlackUserId(str(payload.get("user")))
        silences = self.ports.adapters.alertmanager
        if silences is None:
            await self._say(
                group,
                f":warning: <@{user}>: Alertmanager is not configured on this bot "
                "(ALERTMANAGER_URL); nothing was silenced.",
            )
            return
        now = datetime.now(UTC)
        until = now + timedelta(seconds=int(payload.get("seconds", 3600)))
        comment = str(payload.get("comment") or "")
        matchers = [Matcher(name=k, value=v) for k, v in sorted(group.common_labels.items())]
        try:
            silence_id = await silences.create_silence(
                matchers=matchers,
                starts_at=now,
                ends_at=until,
                created_by=str(payload.get("author") or user),
                comment=comment,
            )
        except AdapterError as exc:
            log.warning("silence for alert group %s not created: %s", group.id, exc.message)
            await self._say(
                group,
                f":warning: <@{user}>, the silence was not created: "
                f"{truncate(escape(exc.message), 300)}. Press Silence again to retry.",
            )
            return
        await self.groups.record_silence(group.id, silence_id=silence_id, until=until, by=user)
        await self._say(
            group,
            f":mute: <@{user}> silenced this group until {when(until)}: "
            f"{truncate(escape(comment), 300)}",
        )
        await self.ports.audit.record(
            AuditEntry(
                at=now,
                actor=user,
                event="alert.silenced",
                service=ServiceName(group.service) if group.service else None,
                detail={"group": group.id, "silence": silence_id, "until": str(until)},
            )
        )

    async def _say(self, group: AlertGroupInfo, text: str) -> None:
        await self.ports.messenger.post(
            group.channel, text=message_text(text), thread_key=thread_key(group.id)
        )
