"""Judging a release from its health queries, and what the verdict says (no sockets)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from catalog.model import HealthQuery
from features.verification.desk import QueryBudget, step_seconds, thread_of
from features.verification.messages import ROLL_BACK, verdict_message
from features.verification.queries import GOLDEN_PATH, health_queries, label_value, promql
from features.verification.tables import VerificationRow
from features.verification.verdict import Observed, Window, formatted, judge, mean, overall
from kernel.ports.systems import Series
from tests.unit.fakes import sample_catalog

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ERRORS = HealthQuery(name="error ratio", expr="x", unit="ratio", max_increase=0.5, min_delta=0.01)


def window(seconds: int = 60) -> Window:
    return Window(started_at=T0, finished_at=T0 + timedelta(seconds=10), seconds=seconds)


def series(before: float, after: float, *, seconds: int = 60) -> Series:
    """One point a second: `before` up to the rollout's start, `after` from its end."""
    start, end = T0.timestamp() - seconds, T0.timestamp() + 10 + seconds
    points = []
    t = start
    while t <= end:
        points.append((t, before if t <= T0.timestamp() else after))
        t += 1
    return Series(labels={}, points=tuple(points))


def test_errors_rising_past_both_thresholds_is_degraded() -> None:
    result = judge(ERRORS, [series(0.01, 0.12)], window())

    assert result.state == "degraded"
    assert result.before == pytest.approx(0.01)
    assert result.after == pytest.approx(0.12)


@pytest.mark.parametrize(
    ("before", "after", "state"),
    [
        (0.01, 0.012, "healthy"),  # +20%: under max_increase
        (0.001, 0.009, "healthy"),  # x9 but +0.8 points: under min_delta
        (0.05, 0.01, "healthy"),  # better
        (0.02, 0.2, "degraded"),
    ],
)
def test_both_the_relative_and_the_absolute_rise_are_needed(
    before: float, after: float, state: str
) -> None:
    assert judge(ERRORS, [series(before, after)], window()).state == state


def test_no_data_on_either_side_is_unknown_and_nan_is_ignored() -> None:
    assert judge(ERRORS, [], window()).state == "unknown"
    only_nan = Series(labels={}, points=((T0.timestamp() - 5, math.nan),))
    assert judge(ERRORS, [only_nan], window()).state == "unknown"
    assert mean([(1.0, math.nan), (2.0, 4.0)], 0, 3) == 4.0


def test_several_series_are_judged_by_their_sum() -> None:
    pods = [series(0, 1), series(0, 2)]
    restarts = HealthQuery(name="restarts", expr="x", unit="count", max_increase=0, min_delta=1)

    result = judge(restarts, pods, window())

    assert (result.before, result.after, result.state) == (0, 3, "degraded")


def test_the_release_is_degraded_if_any_query_is() -> None:
    healthy = judge(ERRORS, [series(0.01, 0.01)], window())
    degraded = judge(ERRORS, [series(0.01, 0.5)], window())
    unknown = judge(ERRORS, [], window())

    assert overall([healthy, degraded, unknown]) == "degraded"
    assert overall([healthy, unknown]) == "healthy"
    assert overall([unknown]) == "unknown"


def test_the_golden_path_is_used_without_catalog_queries_and_names_are_escaped() -> None:
    assert health_queries(sample_catalog(), "refunds") == GOLDEN_PATH
    assert health_queries(sample_catalog(), "checkout")[0].expr.startswith("sandbox_error_ratio")
    assert [q.name for q in GOLDEN_PATH] == ["error ratio", "p99 latency", "restarts"]
    expr = promql(GOLDEN_PATH[0], service='a"b', env="prod", namespace="n")
    assert 'service="a\\"b"' in expr
    assert "{service}" not in expr
    assert label_value("a\\b\n") == "a\\\\b\\n"


def test_the_query_budget_allows_one_query_per_query_per_15_seconds_per_deploy() -> None:
    now = [0.0]
    budget = QueryBudget(monotonic=lambda: now[0])

    assert budget.take("run-1", "error ratio")
    assert not budget.take("run-1", "error ratio")
    assert budget.take("run-1", "restarts")
    assert budget.take("run-2", "error ratio")
    now[0] = 15.0
    assert budget.take("run-1", "error ratio")
    assert budget.spent == 4


def test_the_step_gives_about_120_points_and_never_under_a_second() -> None:
    assert step_seconds(600) == 10
    assert step_seconds(3) == 1


def row(**overrides: object) -> VerificationRow:
    values: dict[str, object] = dict(
        run_id="run-7",
        kind="deploy",
        service="checkout",
        environment="prod",
        version="1.4.3",
        requested_by="U01ALICE",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=10),
        window_seconds=60,
        channel="C01PAYMENTS",
        thread_key="run:run-7",
        state="watching",
    )
    values.update(overrides)
    return VerificationRow(**values)


def observed(before: float, after: float) -> Observed:
    result = judge(ERRORS, [series(before, after)], window())
    return Observed(
        results=[result],
        series={"error ratio": [series(before, after)]},
        errors={},
        start=T0 - timedelta(seconds=60),
        end=T0 + timedelta(seconds=70),
    )


def test_a_degraded_verdict_has_the_numbers_the_link_and_a_roll_back_button() -> None:
    text, blocks = verdict_message(
        row(), observed(0.01, 0.2), grafana="https://g/d/x?a=1&b=2", offer_rollback=True
    )

    assert text.startswith(":warning: *Degraded*: Deploy of `checkout` in `prod` (1.4.3)")
    shown = str(blocks)
    assert "error ratio: 1.00% → 20.00% *degraded*" in shown
    assert "1 min after the rollout against the 1 min before" in shown
    assert "<https://g/d/x?a=1&amp;b=2|Grafana over the same range>" in shown
    button = blocks[-1]["elements"][0]
    assert (button["action_id"], button["value"]) == (ROLL_BACK, "run-7")


def test_a_healthy_verdict_offers_nothing_and_an_automatic_rollback_says_why() -> None:
    text, blocks = verdict_message(row(), observed(0.01, 0.01), grafana=None, offer_rollback=False)
    assert text.startswith(":white_check_mark: *Healthy*")
    assert "actions" not in [b["type"] for b in blocks]

    _, blocks = verdict_message(
        row(), observed(0.01, 0.3), grafana=None, offer_rollback=False, rollback_run="run-9"
    )
    said = str(blocks)
    assert "Rolling back by myself" in said
    assert "`auto_rollback: true`" in said
    assert "error ratio went 1.00% → 30.00%" in said
    assert "run-9" in said


def test_user_text_in_a_verdict_is_escaped() -> None:
    _, blocks = verdict_message(
        row(version="<!channel>"), observed(0.01, 0.01), grafana=None, offer_rollback=False
    )
    assert "<!channel>" not in str(blocks)


def test_values_are_formatted_for_people() -> None:
    assert formatted(0.0123, "ratio") == "1.23%"
    assert formatted(0.31, "seconds") == "310 ms"
    assert formatted(3.0, "count") == "3"
    assert formatted(None, "count") == "no data"


def test_the_verdict_goes_in_the_thread_of_the_runs_progress_message() -> None:
    from engine.db import RunRow

    asked_here = RunRow(id="r1", reply_channel="C01PAYMENTS", flags={})
    in_a_thread = RunRow(id="r2", reply_channel="C01", flags={"thread_key": "alert:g1"})
    announced = RunRow(id="r3", reply_channel=None, flags={"announce_channel": "#payments"})

    assert thread_of(asked_here, "#payments") == ("C01PAYMENTS", "run:r1")
    assert thread_of(in_a_thread, "#payments") == ("C01", "alert:g1")
    assert thread_of(announced, "#x") == ("#payments", "run:r3:announce")
    assert thread_of(None, "#payments") == ("#payments", None)
