"""Without a PUBLIC_URL: the value typed in a Slack modal instead of the bot's page.

Offered only when the bot has no public address, with a warning that the value then
passes through Slack's servers. The modal is bound to the same single-use link as the
page (same person, service, environment, key, ten minutes); its submission goes the same
way (`SecretsDesk.receive_from_modal`). The value is never echoed, not even in an error.
"""

from __future__ import annotations

import json

from features.kit.context import Button, Context, Form
from features.secrets.command import MODAL_BUTTON
from features.secrets.desk import LinkRefused, SecretsDesk, ValueRefused
from features.secrets.page import PROBLEMS
from kernel.blocks import input_block, modal, section, text_input
from kernel.interactions import Click, Reply, Submission
from kernel.mrkdwn import code

CALLBACK_ID = "secrets.set"
VALUE_BLOCK = "value"
MODAL_MAX = 3000
"""Slack's plain_text_input holds at most 3,000 characters."""


class OpenSecretModal(Button):
    """`Type it in a Slack modal` under `secret set`'s answer."""

    action_id = MODAL_BUTTON

    def __init__(self, desk: SecretsDesk) -> None:
        self.desk = desk

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        try:
            link = await self.desk.link_by_id(click.value, user=ctx.user)
        except LinkRefused as refused:
            return Reply(text=PROBLEMS[refused.problem][0] + ".")
        if click.trigger_id is None:
            return Reply(text="Slack sent no trigger for a modal; press the button again.")
        warning = (
            ":warning: The value you type here passes through Slack's servers. The bot never "
            f"echoes or logs it, and writes it to Vault at {code(link.path)}."
        )
        element = text_input(VALUE_BLOCK, multiline=True, max_length=MODAL_MAX)
        view = modal(
            CALLBACK_ID,
            f"Set {link.key}",
            [section(warning), input_block(VALUE_BLOCK, f"Value of {link.key}", element)],
            submit="Store in Vault",
            private_metadata=json.dumps({"link": link.id}),
        )
        await ctx.ports.modals.open(click.trigger_id, view)
        return None


class SecretModal(Form):
    """The modal's submission: the value, checked and handed to the desk."""

    callback_id = CALLBACK_ID

    def __init__(self, desk: SecretsDesk) -> None:
        self.desk = desk

    async def submit(self, ctx: Context, submission: Submission) -> dict[str, str] | None:
        try:
            link_id = str(json.loads(submission.private_metadata)["link"])
        except (ValueError, KeyError, TypeError):
            return {VALUE_BLOCK: "This form is damaged; ask for a new link."}
        value = submission.values.get(VALUE_BLOCK)
        if not isinstance(value, str):
            return {VALUE_BLOCK: "Type the value."}
        try:
            await self.desk.receive_from_modal(link_id, user=ctx.user, value=value)
        except LinkRefused as refused:
            return {VALUE_BLOCK: PROBLEMS[refused.problem][0] + "; nothing was stored."}
        except ValueRefused as refused:
            return {VALUE_BLOCK: refused.message[:150]}
        return None
