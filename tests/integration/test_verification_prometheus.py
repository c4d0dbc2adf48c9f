"""Verification against the real Prometheus: a gauge the test controls, real PromQL range
queries, the verdict from real numbers, on both databases.

The windows are three seconds (the environment's `window_seconds`), so each test waits
for real: about three seconds of data before the "deploy", three after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.prometheus import PrometheusClient
from catalog import Catalog
from catalog.load import load_platform_model
from engine.db import Database
from engine.migrate import upgrade
from engine.timers import ShiftedClock, pending
from features.verification import QueryBudget, VerificationDesk
from features.verification.desk import TIMER_KIND
from features.verification.messages import ROLL_BACK
from features.verification.queries import GOLDEN_PATH, promql
from kernel.ports.systems import Adapters
from kernel.ports.verification import FinishedRollout
from sandbox.standins.observability import MetricTarget, PrometheusServer
from tests.integration.observability_fixtures import (  # noqa: F401
    metric_target,
    prometheus_factory,
)
from tests.unit.fakes import FakeAuditLog, FakeReleases, make_context
from tests.verification_config import HEALTH_METRIC, verification_config

pytestmark = pytest.mark.timeout(90)

WINDOW = 3
LABELS = {"service": "checkout", "env": "staging"}
PROD = {"service": "checkout", "env": "prod"}


class Thread:
    """A Messenger that keeps what was posted, with blocks, key and thread."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    async def post(
        self,
        channel: str,
        *,
        text: str,
        blocks: Any = (),
        key: str | None = None,
        thread_key: str | None = None,
    ) -> None:
        self.posts.append(
            {
                "channel": channel,
                "text": text,
                "blocks": list(blocks),
                "key": key,
                "thread_key": thread_key,
            }
        )

    async def update(self, key: str, *, text: str, blocks: Any = ()) -> None:
        raise AssertionError("the verdict is posted with a key, never updated apart")

    async def ephemeral(self, channel: str, user: Any, *, text: str, blocks: Any = ()) -> None:
        raise AssertionError("nothing ephemeral")


class Counting:
    """The real Prometheus client, counting the requests made through it."""

    def __init__(self, client: PrometheusClient) -> None:
        self.client, self.ranges = client, 0

    async def query(self, expr: str) -> Any:
        return await self.client.query(expr)

    async def query_range(self, expr: str, **kwargs: Any) -> Any:
        self.ranges += 1
        return await self.client.query_range(expr, **kwargs)


@pytest.fixture
async def prometheus(
    metric_target: MetricTarget,  # noqa: F811
    prometheus_factory: Callable[..., Awaitable[PrometheusServer]],  # noqa: F811
) -> AsyncIterator[Counting]:
    metric_target.set(HEALTH_METRIC, 0.01, LABELS)
    metric_target.set(HEALTH_METRIC, 0.01, PROD)
    server = await prometheus_factory(rules_yaml="groups: []\n", targets=[metric_target.base_url])
    client = PrometheusClient(server.url)
    # the window before the deploy needs data: wait until Prometheus has WINDOW seconds
    async with asyncio.timeout(30):
        while not await client.query(HEALTH_METRIC):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    await asyncio.sleep(WINDOW + 0.5)
    yield Counting(client)
    await client.close()


def desk_for(
    tmp_path: Path, db: Database, prometheus: Counting, *, auto_rollback: tuple[str, ...] = ()
) -> tuple[VerificationDesk, Thread, FakeAuditLog, FakeReleases]:
    config = verification_config(tmp_path, window_seconds=WINDOW, auto_rollback=auto_rollback)
    ctx = make_context(
        catalog=Catalog(load_platform_model(config)),
        adapters=Adapters(prometheus=prometheus),
    )
    thread, audit, releases = Thread(), FakeAuditLog(), FakeReleases()
    ports = ctx.ports.__class__(**{**vars(ctx.ports), "messenger": thread, "audit": audit})
    desk = VerificationDesk(ports, db, clock=ShiftedClock(), releases=releases)
    return desk, thread, audit, releases


async def deploy_and_wait(
    desk: VerificationDesk,
    *,
    run_id: str,
    env: str = "staging",
    then: Callable[[], None] | None = None,
) -> None:
    """A rollout of 0.2 s finishing now; `then` changes the metric as it finishes (the
    new version's errors start with it)."""
    started = datetime.now(UTC) - timedelta(seconds=0.2)
    if then is not None:
        then()
    await desk.rollout_finished(
        FinishedRollout(
            run_id=run_id,
            kind="deploy",
            service="checkout",
            env=env,
            version="1.4.3",
            requested_by="U01ALICE",
            started_at=started,
            finished_at=datetime.now(UTC),
        )
    )
    await asyncio.sleep(WINDOW + 1.5)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """One backend is enough where the database is not what is tested."""
    database = Database(f"sqlite:///{tmp_path / 'verify.db'}")
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()


async def test_errors_rising_after_a_deploy_give_a_degraded_verdict_in_its_thread(
    tmp_path: Path,
    db: Database,
    prometheus: Counting,
    metric_target: MetricTarget,  # noqa: F811
) -> None:
    desk, thread, audit, releases = desk_for(tmp_path, db, prometheus)

    await deploy_and_wait(
        desk, run_id="run-1", then=lambda: metric_target.set(HEALTH_METRIC, 0.25, LABELS)
    )
    timers = await db.run(lambda s: pending(s, kind=TIMER_KIND))
    assert [t.key for t in timers] == ["verify:run-1"]
    assert await desk.check("run-1") == "degraded"

    (post,) = thread.posts
    assert post["key"] == "verify:run-1"
    assert post["text"].startswith(":warning: *Degraded*: Deploy of `checkout` in `staging`")
    shown = str(post["blocks"])
    assert "error ratio: 1.00% → " in shown and "*degraded*" in shown
    assert "Grafana" not in shown  # Grafana is not configured here
    assert post["blocks"][-1]["elements"][0]["action_id"] == ROLL_BACK
    assert releases.asked == []  # staging's policy does not roll back by itself
    assert [e.event for e in audit.entries] == ["verification.degraded"]
    evidence = audit.entries[0].detail["queries"][0]
    assert evidence["before"] == pytest.approx(0.01)
    assert evidence["after"] > 0.1
    # one range query per health query for the whole verification
    assert prometheus.ranges == 1
    assert await desk.check("run-1") is None  # judged once
    assert prometheus.ranges == 1


async def test_a_steady_service_is_healthy_and_offers_no_rollback(
    tmp_path: Path, sqlite_db: Database, prometheus: Counting
) -> None:
    desk, thread, _, _ = desk_for(tmp_path, sqlite_db, prometheus)

    await deploy_and_wait(desk, run_id="run-2")

    assert await desk.check("run-2") == "healthy"
    (post,) = thread.posts
    assert post["text"].startswith(":white_check_mark: *Healthy*")
    assert "actions" not in [b["type"] for b in post["blocks"]]
    assert "1.00% → 1.00%" in str(post["blocks"])
    # the golden path's queries (for services without their own) are valid PromQL
    now = datetime.now(UTC)
    for query in GOLDEN_PATH:
        expr = promql(query, service="checkout", env="prod", namespace="checkout-prod")
        found = await prometheus.query_range(
            expr, start=now - timedelta(minutes=5), end=now, step_seconds=15
        )
        assert found == []  # valid, and nothing exposes those metrics here


async def test_auto_rollback_policy_rolls_back_by_itself_with_the_evidence_audited(
    tmp_path: Path,
    sqlite_db: Database,
    prometheus: Counting,
    metric_target: MetricTarget,  # noqa: F811
) -> None:
    desk, thread, audit, releases = desk_for(
        tmp_path, sqlite_db, prometheus, auto_rollback=("prod",)
    )

    await deploy_and_wait(
        desk,
        run_id="run-3",
        env="prod",
        then=lambda: metric_target.set(HEALTH_METRIC, 0.4, PROD),
    )

    assert await desk.check("run-3") == "degraded", audit.entries
    assert releases.asked == [("checkout", "prod", "verification found error ratio degraded")]
    decision = next(e for e in audit.entries if e.event == "verification.auto_rollback")
    assert decision.actor == "platform-bot"
    assert decision.detail["decided_by"] == "environment policy auto_rollback: true"
    assert decision.detail["queries"][0]["after"] > 0.1
    shown = str(thread.posts[0]["blocks"])
    assert "Rolling back by myself" in shown
    assert ROLL_BACK not in shown  # no button: the bot already does it


async def test_a_retried_check_within_15_seconds_asks_prometheus_nothing(
    tmp_path: Path, sqlite_db: Database, prometheus: Counting
) -> None:
    desk, _, _, _ = desk_for(tmp_path, sqlite_db, prometheus)
    clock = [time.monotonic()]
    desk.budget = QueryBudget(monotonic=lambda: clock[0])
    await deploy_and_wait(desk, run_id="run-4")
    desk.budget.take("run-4", "error ratio")  # as if a first attempt had asked and crashed

    from features.verification.desk import TooSoon

    with pytest.raises(TooSoon):
        await desk.check("run-4")
    assert prometheus.ranges == 0
    clock[0] += 15
    assert await desk.check("run-4") == "healthy"
    assert prometheus.ranges == 1
