"""Stopping (issue 10, item 12): `platform-bot serve`, a real process, gets SIGTERM while a
Run watches a rollout. It exits within a few seconds, gives the Run's claim back (so
another replica or the next start resumes it at once, not after the lease), and says so
in its log. The next start finishes the Run.

The stand-ins run in this test's process (the sandbox stack, its own bot's loops
stopped); the bot under test is a separate `platform-bot serve` on the same database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from app.bootstrap import build_app
from app.settings import Settings
from engine.db import Database, RunRow, RunStepRow
from sandbox.app.stack import SIGNING_SECRET, SandboxStack, free_port, sandbox_stack
from sandbox.standins.slack_client import SlackSender

REPO = Path(__file__).resolve().parent.parent.parent
EXIT_WITHIN_S = 5.0


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url) as running:
        await running.bot.tasks.shutdown()  # this process's bot takes no Runs
        for cluster in running.clusters.values():
            # a rollout that takes a minute: the Run is still watching it when SIGTERM comes
            cluster.rollout_seconds = 60
        yield running


def environment(settings: Settings, *, port: int, worker_id: str) -> dict[str, str]:
    """`settings` as the environment variables `platform-bot serve` reads."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    env["PYTHONPATH"] = str(REPO)  # the tree this test runs from (scripts/mutants' copy too)
    env.update(PORT=str(port), WORKER_ID=worker_id, LOG_FORMAT="json", HOST="127.0.0.1")
    return env


async def ready(port: int, process: asyncio.subprocess.Process, *, within: float = 120) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert process.returncode is None, "platform-bot serve exited while starting"
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("platform-bot serve never became ready")


async def step_state(db: Database, name: str) -> tuple[str | None, str | None, str | None]:
    """(the Run's state, who claims it, the state of its step `name`)."""

    def read(session: object) -> tuple[str | None, str | None, str | None]:
        from sqlalchemy.orm import Session

        assert isinstance(session, Session)
        run = session.execute(select(RunRow)).scalar()
        if run is None:
            return None, None, None
        step = session.execute(
            select(RunStepRow.state).where(RunStepRow.run_id == run.id, RunStepRow.name == name)
        ).scalar()
        return run.state, run.claimed_by, step

    return await db.run(read)


@pytest.mark.timeout(300)  # two bot starts in subprocesses; slow on a busy machine
async def test_sigterm_while_watching_a_rollout_exits_fast_and_hands_the_run_back(
    stack: SandboxStack, tmp_path: Path
) -> None:
    settings = stack.bot.settings
    port = free_port()
    log_path = tmp_path / "serve.log"
    serve = Path(sys.executable).with_name("platform-bot")
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(serve),
            "serve",
            cwd=REPO,
            env=environment(settings, port=port, worker_id="replica-1"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    db = Database(settings.database_url)
    try:
        try:
            await ready(port, process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{log_path.read_text(errors='replace')}") from None
        async with SlackSender(
            events_url=f"http://127.0.0.1:{port}/slack/events",
            signing_secret=SIGNING_SECRET,
            workspace=stack.workspace,
            standin=stack.slack,
        ) as sender:
            answer = await sender.slash_command(
                "deploy checkout staging 1.4.3", user="alice", channel="#payments"
            )
        assert answer.status == 200
        for _ in range(1200):  # a busy machine starts slowly; stopping is what is measured
            if await step_state(db, "watch") == ("running", "replica-1", "running"):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the Run never watched: {await step_state(db, 'watch')}")

        asked = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        took = time.monotonic() - asked
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    said = log_path.read_text(errors="replace")

    assert code == 0, said
    assert took < EXIT_WITHIN_S, f"took {took:.1f} s to exit:\n{said}"
    print(f"platform-bot serve exited {took:.2f} s after SIGTERM")
    assert await step_state(db, "watch") == ("pending", None, "pending"), said
    assert "run released at shutdown" in said and "resumes it" in said

    # the next start (or another replica) resumes it at once, not after the 30 s lease,
    # at the step that was cut short
    again = build_app(settings.model_copy(update={"port": free_port(), "worker_id": "replica-2"}))
    await again.start()
    try:
        for _ in range(600):
            state = await step_state(db, "watch")
            if state == ("running", "replica-2", "running"):
                break
            await asyncio.sleep(0.1)
        assert state == ("running", "replica-2", "running")
        steps = await db.run(
            lambda s: {n: st for n, st in s.execute(select(RunStepRow.name, RunStepRow.state))}
        )
        assert steps["change"] == "done"  # the image was set once, not again
    finally:
        await again.stop()
    assert await step_state(db, "watch") == ("pending", None, "pending")  # and again
    db.dispose()
