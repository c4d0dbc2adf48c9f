"""**Extend** and **Delete now** on the warnings and the ready message, and the
confirmation's **Delete**."""

from __future__ import annotations

from features.environments.command import confirm_delete, delete_now, extend
from features.environments.desk import CONFIRM_BUTTON, DELETE_BUTTON, EXTEND_BUTTON, EnvironmentDesk
from features.kit.context import Button, Context
from kernel.interactions import Click, Reply

UNKNOWN = Reply(text="That environment is unknown; nothing was done.")


class ExtendButton(Button):
    """Extend by the team's default time to live (beyond the maximum: approval)."""

    action_id = EXTEND_BUTTON

    def __init__(self, desk: EnvironmentDesk) -> None:
        self.desk = desk

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        env = await self.desk.get(click.value)
        if env is None:
            return UNKNOWN
        return await extend(ctx, self.desk, env, hours=None)


class DeleteButton(Button):
    """Delete now: asks to confirm first."""

    action_id = DELETE_BUTTON

    def __init__(self, desk: EnvironmentDesk) -> None:
        self.desk = desk

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        env = await self.desk.get(click.value)
        if env is None:
            return UNKNOWN
        return await confirm_delete(ctx, env)


class ConfirmDeleteButton(Button):
    """The confirmation: the teardown Run starts."""

    action_id = CONFIRM_BUTTON

    def __init__(self, desk: EnvironmentDesk) -> None:
        self.desk = desk

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        env = await self.desk.get(click.value)
        if env is None:
            return UNKNOWN
        return await delete_now(ctx, env)
