"""`FileUploads` on Slack's external upload flow (slack_sdk's `files_upload_v2`):
files.getUploadURLExternal (a URL and a file id for `filename` and `length`), a POST of
the bytes to that URL, then files.completeUploadExternal sharing it in the channel, in
a thread when given (https://docs.slack.dev/reference/methods/files.getUploadURLExternal,
https://docs.slack.dev/reference/methods/files.completeUploadExternal).

A thread is named by our own message key (as the outbox names messages); its ts is
looked up where the deliverer recorded it (`slack_messages`), waiting a little for a
message still in the outbox. Uploads are direct, not queued: a chart is a best-effort
addition to a message that already went through the outbox.
"""

from __future__ import annotations

import asyncio

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.orm import Session

from engine.db import Database, SlackMessageRow
from kernel.errors import AdapterError

THREAD_WAIT_SECONDS = 10.0
"""How long an upload waits for the message it replies to to reach Slack."""


class SlackFiles:
    def __init__(
        self, db: Database, client: AsyncWebClient, *, thread_wait: float = THREAD_WAIT_SECONDS
    ) -> None:
        self.db, self.client, self.thread_wait = db, client, thread_wait

    async def upload(
        self,
        channel: str,
        *,
        content: bytes,
        filename: str,
        title: str,
        alt_text: str = "",
        thread_key: str | None = None,
        comment: str | None = None,
    ) -> str:
        thread_ts = None
        if thread_key is not None:
            channel, thread_ts = await self._landed(thread_key)
        if channel.startswith("#"):
            raise AdapterError("Slack", "a file is shared in a channel id, not a #name")
        try:
            response = await self.client.files_upload_v2(
                content=content,
                filename=filename,
                title=title,
                alt_txt=alt_text or None,
                channel=channel,
                thread_ts=thread_ts,
                initial_comment=comment,
            )
        except SlackApiError as exc:
            raise AdapterError("Slack", f"upload refused ({exc.response.get('error')})") from None
        files = response.get("files") or [{}]
        return str(files[0].get("id", ""))

    async def _landed(self, key: str) -> tuple[str, str]:
        """(channel id, ts) of our message `key`, once the deliverer posted it."""

        def find(session: Session) -> tuple[str, str] | None:
            row = session.get(SlackMessageRow, key)
            return (row.channel, row.ts) if row is not None else None

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.thread_wait
        while True:
            found = await self.db.run(find)
            if found is not None:
                return found
            if loop.time() > deadline:
                raise AdapterError("Slack", f"the message {key} has not reached Slack yet")
            await asyncio.sleep(0.2)
