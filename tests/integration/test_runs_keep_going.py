"""Runs whose steps are all attempted (`Step.keep_going`), and how a failed Run is shown:
each failure once, on its step's line, and a system the bot is not configured for as the
operator's problem, with who to ask. On a real database (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from engine.db import Database, RunRow
from engine.metrics import Metrics
from engine.outbox import Outbox
from engine.progress import render_progress
from engine.runs import RunEngine
from kernel.actions import Action, Step, StepContext
from kernel.errors import NotConfigured, StepFailed
from kernel.ids import SlackUserId

ALICE = SlackUserId("U01ALICE")
OPERATORS = "the platform team (<!subteam^S03PLATFORM>)"


class Undo(Action):
    kind: ClassVar[str] = "test.undo"

    name: str


class UndoExecutor:
    """Five steps; the middle three are attempted whatever happens to the others."""

    action_type = Undo

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.failures: dict[str, Exception] = {}

    def steps(self, action: Action) -> Sequence[Step]:
        return [
            Step("record", "Record what is there", self._step("record")),
            Step("vault", "Vault paths", self._step("vault"), keep_going=True),
            Step("kubernetes", "Namespaces", self._step("kubernetes"), keep_going=True),
            Step("gitlab", "GitLab project", self._step("gitlab"), keep_going=True),
            Step("forget", "Forget it", self._step("forget")),
        ]

    def _step(self, name: str) -> Any:
        async def run(context: StepContext) -> dict[str, Any]:
            self.ran.append(name)
            if name in self.failures:
                raise self.failures[name]
            return {"outcome": f"{name} gone"}

        return run


def engine_with(db: Database, executor: UndoExecutor) -> RunEngine:
    return RunEngine(db, Outbox(db), Metrics(), [executor], worker_id="w1", poll_interval=0.02)


def text_of(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


async def test_every_keep_going_step_is_attempted_and_retry_runs_only_the_failed(
    db: Database,
) -> None:
    executor = UndoExecutor()
    executor.failures = {
        "vault": NotConfigured("Vault", "VAULT_ADDR and VAULT_TOKEN"),
        "gitlab": StepFailed("GitLab answered 500"),
    }
    engine = engine_with(db, executor)
    run_id = (await engine.submit(Undo(name="x"), requested_by=ALICE, idempotency_key="k")).run_id

    assert await engine.run_next() is True

    assert executor.ran == ["record", "vault", "kubernetes", "gitlab", "forget"]
    row = await db.run(lambda s: s.get_one(RunRow, run_id))
    assert (row.state, row.error) == (
        "failed",
        "Vault paths: Vault is not configured on this bot; GitLab project: GitLab answered 500",
    )
    view = await engine.view(run_id)
    assert view.steps == [
        ("Record what is there", "done", "record gone"),
        ("Vault paths", "failed", "Vault is not configured on this bot"),
        ("Namespaces", "done", "kubernetes gone"),
        ("GitLab project", "failed", "GitLab answered 500"),
        ("Forget it", "done", "forget gone"),
    ]

    executor.failures.clear()  # the platform team configured Vault; GitLab is back
    assert await engine.retry(run_id, by=ALICE) is True
    assert await engine.run_next() is True
    assert executor.ran[5:] == ["vault", "gitlab"]
    view = await engine.view(run_id)
    assert view.state == "succeeded" and view.not_configured == []


async def test_a_step_without_keep_going_still_stops_the_run(db: Database) -> None:
    executor = UndoExecutor()
    executor.failures = {"record": StepFailed("defined in platform.yml")}
    engine = engine_with(db, executor)
    run_id = (await engine.submit(Undo(name="x"), requested_by=ALICE, idempotency_key="k")).run_id

    await engine.run_next()

    assert executor.ran == ["record"]
    row = await db.run(lambda s: s.get_one(RunRow, run_id))
    assert (row.state, row.error) == ("failed", "Record what is there: defined in platform.yml")


async def test_each_failure_is_said_once_and_the_operator_problem_names_who_to_ask(
    db: Database,
) -> None:
    executor = UndoExecutor()
    executor.failures = {
        "vault": NotConfigured("Vault", "VAULT_ADDR and VAULT_TOKEN"),
        "gitlab": StepFailed("GitLab answered 500"),
    }
    engine = engine_with(db, executor)
    run_id = (await engine.submit(Undo(name="x"), requested_by=ALICE, idempotency_key="k")).run_id
    await engine.run_next()

    _, blocks = render_progress(await engine.view(run_id), operators=OPERATORS)

    lines = blocks[1]["text"]["text"].splitlines()
    assert lines == [
        "✓ Record what is there: record gone",
        "✗ Vault paths: Vault is not configured on this bot",
        "✓ Namespaces: kubernetes gone",
        "✗ GitLab project: GitLab answered 500",
        "✓ Forget it: forget gone",
    ]
    contexts = [b["elements"][0]["text"] for b in blocks if b["type"] == "context"]
    assert contexts == [
        ":wrench: Vault is not configured on this bot (it needs VAULT_ADDR and VAULT_TOKEN). "
        f"That is not yours to fix: ask {OPERATORS}, then press Retry."
    ]
    assert text_of(blocks).count("GitLab answered 500") == 1
    assert text_of(blocks).count("VAULT_ADDR") == 1
    assert [b["type"] for b in blocks][-1] == "actions"  # Retry
