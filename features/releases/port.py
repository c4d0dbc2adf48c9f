"""The `Releases` port: what other features may ask of releases, through kernel.ports.

The alert thread's Rollback button asks here, so an alert's rollback is planned,
approved and carried out exactly like `/platform rollback`, without the alerts feature
importing this one.
"""

from __future__ import annotations

from features.kit.context import Context, Ports
from features.releases.planning import start_rollback
from kernel.interactions import Reply
from kernel.ports.platform import Asker


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
