"""The `Releases` port: what other features may ask of releases, through kernel.ports.

The alert thread's Rollback button asks here, so an alert's rollback is planned,
approved and carried out exactly like `/platform rollback`, without the alerts feature
importing this one.
"""

from __future__ import annotations

from features.kit.context import Context, Ports
from features.releases.backends import backend_for
from features.releases.planning import start_rollback
from features.releases.targets import lookup_target
from kernel.ids import RunId, SlackChannelId, SlackTeamId, SlackUserId
from kernel.interactions import Reply
from kernel.ports.platform import Asker

BOT = SlackUserId("platform-bot")
"""Who the bot's own decisions (an automatic rollback) are requested by."""


class ReleaseDesk:
    """`Releases` on this feature's planning, with the ports of the running bot."""

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    async def rollback(
        self,
        asker: Asker,
        *,
        service: str,
        env: str,
        reason: str | None = None,
        thread_key: str | None = None,
    ) -> Reply:
        ctx = Context(
            user=asker.user,
            channel=asker.channel,
            team=asker.team,
            request_key=asker.request_key,
            ports=self.ports,
        )
        return await start_rollback(
            ctx, service=service, env=env, reason=reason, thread_key=thread_key
        )

    async def auto_rollback(
        self,
        *,
        service: str,
        env: str,
        reason: str,
        idempotency_key: str,
        reply_channel: SlackChannelId | None = None,
    ) -> RunId:
        """The bot's rollback to the previous revision, without approval: the
        environment's `auto_rollback` policy decided it (the caller audits why)."""
        ctx = Context(
            user=BOT,
            channel=reply_channel or SlackChannelId(""),
            team=SlackTeamId(""),
            request_key=idempotency_key,
            ports=self.ports,
        )
        target = lookup_target(ctx, service, env)
        action = await backend_for(self.ports, target.backend).plan_rollback(
            target, to_revision=None, disable_auto_sync=True
        )
        submitted = await self.ports.runs.submit(
            action,
            requested_by=BOT,
            idempotency_key=idempotency_key,
            reply_channel=reply_channel,
        )
        return submitted.run_id
