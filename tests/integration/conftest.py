"""Fixtures for integration tests: a migrated database, and a test Action to run.

`Touch` is the smallest Action worth running: three steps that record each execution
(in memory, or one line per Run in a file opened with O_APPEND so several processes
can share it), pass outputs forward, and can be told to fail or to block at a step.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from engine.db import Database
from engine.migrate import upgrade
from kernel.actions import Action, Step, StepContext
from kernel.errors import StepFailed
from kernel.ids import RunId

TOUCH_STEPS = (("prepare", "Prepare"), ("touch", "Touch the thing"), ("finish", "Finish"))
"""(name, title) of Touch's steps, in order. tests/integration/run_worker.py repeats them."""


class Touch(Action):
    """Touch one named thing of a service; changes nothing but the test's records."""

    kind: ClassVar[str] = "test.touch"

    name: str
    service: str = "checkout"
    lock: str | None = None

    def summary(self) -> str:
        return f"touch {self.name} of {self.service}"

    def lock_key(self) -> str | None:
        return self.lock


@dataclass
class Recorder:
    """What Touch's steps did: every (run id, step name) executed, in order.

    With `log_path`, the "touch" step also appends "<run id>\\n" to that file with one
    O_APPEND write, which is atomic for a short line even across processes.
    """

    log_path: Path | None = None
    executed: list[tuple[RunId, str]] = field(default_factory=list)
    seen_outputs: dict[tuple[RunId, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, context: StepContext, step: str) -> None:
        self.executed.append((context.run_id, step))
        self.seen_outputs[(context.run_id, step)] = {k: dict(v) for k, v in context.outputs.items()}
        if self.log_path is not None and step == "touch":
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{context.run_id}\n".encode())
            finally:
                os.close(fd)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def steps_of(self, run_id: RunId) -> list[str]:
        return [step for rid, step in self.executed if rid == run_id]

    def counts(self) -> Counter[tuple[RunId, str]]:
        return Counter(self.executed)

    async def wait_until(self, predicate: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait (without sleeping) until `predicate(self)` holds after some execution."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await self._changed.wait()


@dataclass
class TouchExecutor:
    """Touch's steps. `fail_at` maps a step to a StepFailed message; `block_at` names a
    step that records itself, sets `entered`, and then waits for `release`."""

    recorder: Recorder
    fail_at: dict[str, str] = field(default_factory=dict)
    block_at: str | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    action_type: ClassVar[type[Action]] = Touch

    def steps(self, action: Action) -> Sequence[Step]:
        return [Step(name, title, self._step(name)) for name, title in TOUCH_STEPS]

    def _step(self, name: str) -> Any:
        async def run(context: StepContext) -> dict[str, Any]:
            self.recorder.record(context, name)
            if name == self.block_at:
                self.entered.set()
                await self.release.wait()
            if name in self.fail_at:
                raise StepFailed(self.fail_at[name])
            action = context.action
            assert isinstance(action, Touch)
            if name == "prepare":
                return {"prepared": action.name}
            if name == "touch":
                return {"token": f"{context.outputs['prepare']['prepared']}-touched"}
            return {"summary": f"{context.outputs['touch']['token']} (attempt {context.attempt})"}

        return run


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database on each backend, disposed after the test."""
    database = Database(database_url)
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def touch(recorder: Recorder) -> TouchExecutor:
    return TouchExecutor(recorder)
