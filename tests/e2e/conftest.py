"""A running bot on each database backend, driven through signed Slack requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.harness import Chat


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url) as running:
        yield running


@pytest.fixture
def chat(stack: SandboxStack) -> Chat:
    return Chat(stack)
