"""**Extend** on the warning before a grant ends."""

from __future__ import annotations

from features.access.command import extend_grant
from features.access.desk import EXTEND_BUTTON, AccessDesk
from features.kit.context import Button, Context
from kernel.interactions import Click, Reply


class ExtendButton(Button):
    """Extend a grant by as long again as it was granted for (at most an hour)."""

    action_id = EXTEND_BUTTON

    def __init__(self, desk: AccessDesk) -> None:
        self.desk = desk

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        grant = await self.desk.grant(click.value)
        if grant is None:
            return Reply(text="That grant is unknown; nothing was done.")
        minutes = min(int((grant.expires_at - grant.granted_at).total_seconds() // 60), 60)
        return await extend_grant(ctx, grant, minutes=max(minutes, 1))
