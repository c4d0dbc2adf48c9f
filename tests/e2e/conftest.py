"""A running bot on each database backend, driven through signed Slack requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from sandbox.app.stack import SandboxStack, sandbox_stack
from sandbox.standins.slack_client import ACK_DEADLINE_S, SlackSender
from tests.harness import Chat


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url) as running:
        yield running


@pytest.fixture
def chat(stack: SandboxStack) -> Chat:
    return Chat(stack)


@pytest.fixture(autouse=True)
def within_slacks_three_seconds(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every e2e test fails if the bot answered any delivery after Slack's 3 seconds,
    as Slack would have shown an error or retried (sandbox.standins.slack_client)."""
    yield
    for value in request.node.funcargs.values():
        sender = getattr(value, "sender", None)
        if isinstance(sender, SlackSender) and sender.late_acks:
            late = ", ".join(f"{a.kind} {a.seconds:.2f} s" for a in sender.late_acks)
            pytest.fail(f"answered after Slack's {ACK_DEADLINE_S:g} s: {late}")
