"""A Run's progress message, updated in place, and its Retry button, clicked as in Slack."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from kernel.actions import Action, Step, StepContext
from kernel.errors import StepFailed
from kernel.ids import SlackChannelId, SlackUserId
from sandbox.app.stack import SandboxStack, sandbox_stack
from sandbox.standins.slack_api import Message


class Flaky(Action):
    kind = "test.flaky"
    service: str


class FlakyExecutor:
    """Fails its second step on the first attempt, succeeds after."""

    action_type = Flaky

    def __init__(self) -> None:
        self.attempts = {"prepare": 0, "apply": 0}

    def steps(self, action: Action) -> Sequence[Step]:
        async def prepare(ctx: StepContext) -> dict[str, Any]:
            self.attempts["prepare"] += 1
            return {}

        async def apply(ctx: StepContext) -> dict[str, Any]:
            self.attempts["apply"] += 1
            if self.attempts["apply"] == 1:
                raise StepFailed("GitLab answered 500")
            return {}

        return [Step("prepare", "Prepare", prepare), Step("apply", "Apply the change", apply)]


async def _progress_message(stack: SandboxStack, headline: str) -> Message:
    for _ in range(200):
        for message in stack.slack.messages.get("C01PAYMENTS", []):
            if message.text.startswith(headline):
                return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no progress message saying {headline!r}")


async def test_failed_run_is_retried_from_its_button(database_url: str) -> None:
    executor = FlakyExecutor()
    async with sandbox_stack(database_url=database_url, executors=[executor]) as stack:
        await stack.bot.engine.submit(
            Flaky(service="checkout"),
            requested_by=SlackUserId("U01ALICE"),
            idempotency_key="flaky-1",
            reply_channel=SlackChannelId("C01PAYMENTS"),
        )
        failed = await _progress_message(stack, "*Failed*")
        assert "✗ Apply the change: GitLab answered 500" in str(failed.blocks)
        assert len(stack.slack.messages["C01PAYMENTS"]) == 1  # one message, updated in place

        mark = len(stack.slack.ephemerals)
        response = await stack.sender.block_actions(
            user="carol", action_id="run.retry", channel="C01PAYMENTS", message_ts=failed.ts
        )
        assert response.status == 200
        await stack.slack.wait_for("response_url", start=0)
        refusal = next(e for e in stack.slack.ephemerals[mark:] if e.user == "U03CAROL")
        assert refusal.text.startswith("Only <@U01ALICE>, who asked for this Run")

        await stack.sender.block_actions(
            user="alice", action_id="run.retry", channel="C01PAYMENTS", message_ts=failed.ts
        )
        done = await _progress_message(stack, "*Done*")
        assert done.ts == failed.ts and done.edits >= 2
        assert executor.attempts == {"prepare": 1, "apply": 2}  # done steps are skipped

        assert "run.retry" not in str(done.blocks)  # nothing left to retry


async def test_a_forged_retry_value_names_nothing(database_url: str) -> None:
    async with sandbox_stack(database_url=database_url) as stack:
        payload_user = "alice"
        message = stack.slack.add_user_message(
            "#payments",
            user="U01ALICE",
            text="fake",
            blocks=[
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "run.retry",
                            "value": "not-a-run",
                            "text": {"type": "plain_text", "text": "Retry"},
                        }
                    ],
                }
            ],
        )
        mark = len(stack.slack.ephemerals)
        await stack.sender.block_actions(
            user=payload_user, action_id="run.retry", channel="C01PAYMENTS", message_ts=message.ts
        )
        await stack.slack.wait_for("response_url")
        reply = next(e for e in stack.slack.ephemerals[mark:] if e.user == "U01ALICE")
        assert reply.text == "That Run no longer exists; nothing was retried."
