"""The `Messenger` and `Modals` ports on Slack: messages through the outbox, modals direct."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from engine.outbox import Outbox
from kernel.errors import TryAgainLater
from kernel.ids import SlackUserId

log = logging.getLogger(__name__)

STALE_VIEW = frozenset({"hash_conflict", "not_found"})
"""views.update errors meaning the modal moved on (changed since, or closed)."""


class OutboxMessenger:
    """Every message is an outbox row first, so nothing is lost to a restart or a 429."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def post(
        self,
        channel: str,
        *,
        text: str,
        blocks: Sequence[dict[str, Any]] = (),
        key: str | None = None,
        thread_key: str | None = None,
    ) -> None:
        if key is None:
            await self.outbox.submit(
                lambda session, outbox: outbox.enqueue_post(
                    session, channel, text=text, blocks=blocks, thread_key=thread_key
                )
            )
            return
        # A keyed post is one message: posting it again (a step re-run after a crash)
        # updates it instead of posting a second one.
        await self.outbox.submit(
            lambda session, outbox: outbox.enqueue_post_or_update(
                session, channel, key, text=text, blocks=blocks, thread_key=thread_key
            )
        )

    async def update(self, key: str, *, text: str, blocks: Sequence[dict[str, Any]] = ()) -> None:
        await self.outbox.submit(
            lambda session, outbox: outbox.enqueue_update(session, key, text=text, blocks=blocks)
        )

    async def ephemeral(
        self, channel: str, user: SlackUserId, *, text: str, blocks: Sequence[dict[str, Any]] = ()
    ) -> None:
        await self.outbox.submit(
            lambda session, outbox: outbox.enqueue_ephemeral(
                session, channel, user, text=text, blocks=blocks
            )
        )


class SlackModals:
    """views.open / views.update, straight to Slack within the trigger's 3 seconds."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def open(self, trigger_id: str, view: dict[str, Any]) -> str:
        try:
            response = await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            raise TryAgainLater(
                f"Slack did not open the form ({exc.response.get('error')})"
            ) from exc
        return str((response.get("view") or {}).get("id", ""))

    async def update(self, view_id: str, view: dict[str, Any], *, hash: str | None = None) -> bool:
        try:
            await self.client.views_update(view_id=view_id, view=view, hash=hash)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in STALE_VIEW:
                log.info("modal not updated", extra={"view_id": view_id, "error": error})
                return False
            raise TryAgainLater(f"Slack did not update the form ({error})") from exc
        return True
