"""The one home of background work: start, guard, stop and await every loop the bot
runs (Run workers, the outbox deliverer, the alert worker, sweeps), with one shutdown
deadline.

A loop is `async def loop(stop: asyncio.Event) -> None` that returns soon after `stop`
is set. `Tasks` guards each one: a loop that crashes is logged and started again after
a pause, so one bad row never silences the bot. On shutdown every loop is told to stop;
whatever has not returned by the deadline is cancelled (a Run step being cancelled
gives up its claim, so another replica or the next start resumes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[None]]

RESTART_PAUSE = 1.0
"""Seconds before a crashed loop is started again."""
SHUTDOWN_DEADLINE = 3.0
"""Seconds loops get to return after being told to stop, before they are cancelled."""
STOP_GRACE = 1.0
"""Seconds a Run's step may still take to finish once the bot is told to stop (`cancel_on`);
then it is cut short, and its Run handed back to be resumed."""


class Tasks:
    """Every background loop of one bot, started and stopped together."""

    def __init__(self, *, deadline: float = SHUTDOWN_DEADLINE) -> None:
        self.stop = asyncio.Event()
        self.deadline = deadline
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, loop: Loop) -> None:
        """Run `loop(stop)` in the background, restarted if it crashes, until `shutdown`."""
        if name in self._tasks:
            raise RuntimeError(f"a background loop named {name!r} is already running")
        self._tasks[name] = asyncio.create_task(self._guarded(name, loop), name=name)

    @property
    def names(self) -> list[str]:
        return sorted(self._tasks)

    async def _guarded(self, name: str, loop: Loop) -> None:
        while not self.stop.is_set():
            try:
                await loop(self.stop)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background loop crashed; starting it again", extra={"loop": name})
                await sleep_unless(self.stop, RESTART_PAUSE)

    async def shutdown(self) -> list[str]:
        """Tell every loop to stop, wait up to the deadline, cancel the rest; the names of
        the loops that had to be cancelled."""
        self.stop.set()
        tasks = list(self._tasks.values())
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=self.deadline)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self.deadline)
            log.warning(
                "background loops cancelled at shutdown",
                extra={"loops": sorted(t.get_name() for t in pending)},
            )
        self._tasks.clear()
        return sorted(t.get_name() for t in pending)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, or less if `stop` is set meanwhile; True if it was set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when any of `events` is set, or after `seconds`."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def cancel_on(
    stop: asyncio.Event | None, work: Coroutine[Any, Any, None], *, grace: float = STOP_GRACE
) -> bool:
    """Await `work`; True once it is done. If `stop` is set first, give it `grace` seconds
    to finish (a step about to end ends), then cancel it, wait while it unwinds, and answer
    False. Without `stop`, just await it. Its exceptions propagate."""
    if stop is None:
        await work
        return True
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace)
    except asyncio.CancelledError:  # we are cancelled ourselves: so is the work
        task.cancel()
        await asyncio.wait({task}, timeout=SHUTDOWN_DEADLINE)
        raise
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    await task
    return True
