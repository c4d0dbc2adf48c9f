"""Sharing a file (a chart) in Slack: the external upload flow behind a small port."""

from __future__ import annotations

from typing import Protocol


class FileUploads(Protocol):
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
        """Share `content` in `channel` (an id), as a reply in the thread of our message
        `thread_key` when given; the file's id. AdapterError when Slack refuses."""
        ...
