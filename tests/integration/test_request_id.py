"""JSON logs carry the request id of the Slack request that started a Run, in its worker."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Sequence
from typing import Any

from engine.logs import JsonFormatter, request_id
from kernel.actions import Action, Step, StepContext
from kernel.ids import SlackUserId
from sandbox.app.stack import sandbox_stack


class Note(Action):
    kind = "test.note"
    service: str


class NoteExecutor:
    action_type = Note

    def steps(self, action: Action) -> Sequence[Step]:
        async def note(ctx: StepContext) -> dict[str, Any]:
            logging.getLogger("test.note").info("noting", extra={"secret_free": True})
            return {}

        return [Step("note", "Take a note", note)]


async def test_request_id_follows_the_run(database_url: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        async with sandbox_stack(database_url=database_url, executors=[NoteExecutor()]) as stack:
            token = request_id.set("req-abc123")
            try:
                submitted = await stack.bot.engine.submit(
                    Note(service="checkout"),
                    requested_by=SlackUserId("U01ALICE"),
                    idempotency_key="note-1",
                )
            finally:
                request_id.reset(token)
            for _ in range(100):
                if (await stack.bot.engine.view(submitted.run_id)).state == "succeeded":
                    break
                await asyncio.sleep(0.05)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    noted = [entry for entry in lines if entry["message"] == "noting"]
    assert noted and noted[0]["request_id"] == "req-abc123"
    assert noted[0]["logger"] == "test.note" and noted[0]["secret_free"] is True
    finished = [entry for entry in lines if entry["message"] == "run finished"]
    assert finished[0]["request_id"] == "req-abc123"
    assert finished[0]["state"] == "succeeded"
