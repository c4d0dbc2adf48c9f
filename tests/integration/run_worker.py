"""A Run worker process for the multi-process tests: one replica of the bot's engine.

    python tests/integration/run_worker.py DATABASE_URL LOGFILE WORKER_ID [--wait-for-go]

It executes Touch Runs (kind "test.touch", the same steps as tests/integration/
conftest.py, which it cannot import because that imports pytest); the "touch" step
appends "<run id> <worker id>" to LOGFILE with one O_APPEND write. With --wait-for-go
it prints "ready" once connected and starts working when a line "go" arrives on stdin
(the parent says go to every worker at once, so they start together; at end of input,
the parent is gone and it exits 1). It exits 0 once no Run has been pending or running
for about a second.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import func, select

from engine.db import Database, RunRow
from engine.metrics import Metrics
from engine.outbox import Outbox
from engine.run_states import ACTIVE_STATES
from engine.runs import RunEngine
from kernel.actions import Action, Step, StepContext

IDLE_EXIT_S = 1.0
STEPS = (("prepare", "Prepare"), ("touch", "Touch the thing"), ("finish", "Finish"))


class Touch(Action):
    kind: ClassVar[str] = "test.touch"

    name: str
    service: str = "checkout"
    lock: str | None = None


class FileTouchExecutor:
    action_type: ClassVar[type[Action]] = Touch

    def __init__(self, log_path: Path, worker_id: str) -> None:
        self.log_path, self.worker_id = log_path, worker_id
        self.executed = 0

    def steps(self, action: Action) -> Sequence[Step]:
        return [Step(name, title, self._step(name)) for name, title in STEPS]

    def _step(self, name: str) -> Any:
        async def run(context: StepContext) -> dict[str, Any]:
            if name == "touch":
                fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, f"{context.run_id} {self.worker_id}\n".encode())
                finally:
                    os.close(fd)
                self.executed += 1
            return {"step": name}

        return run


def _active(session: Any) -> int:
    query = select(func.count()).select_from(RunRow).where(RunRow.state.in_(ACTIVE_STATES))
    return int(session.execute(query).scalar_one())


async def main(url: str, log_path: Path, worker_id: str, *, wait_for_go: bool) -> int:
    db = Database(url)
    executor = FileTouchExecutor(log_path, worker_id)
    engine = RunEngine(
        db,
        Outbox(db),
        Metrics(),
        [executor],
        worker_id=worker_id,
        lease=timedelta(seconds=3),
        concurrency=4,
        poll_interval=0.05,
    )
    try:
        await db.ping()
        if wait_for_go:
            print("ready", flush=True)
            if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
                return 1
        stop = asyncio.Event()
        work = asyncio.create_task(engine.work(stop))
        idle_since: float | None = None
        while not work.done():
            if await db.run(_active):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= IDLE_EXIT_S:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await work  # re-raises if the engine crashed
    finally:
        db.dispose()
    print(f"executed {executor.executed}", flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5) or sys.argv[4:] not in ([], ["--wait-for-go"]):
        sys.exit(__doc__)
    url, log, worker = sys.argv[1:4]
    sys.exit(asyncio.run(main(url, Path(log), worker, wait_for_go=len(sys.argv) == 5)))
