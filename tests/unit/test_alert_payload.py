"""The Alertmanager payload model, routing through the catalog, and what threads say."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from catalog import Catalog
from catalog.load import load_platform_model
from features.alerts.buttons import parse_duration
from features.alerts.payload import PayloadError, expression_of, parse
from features.alerts.threads import (
    AlertLine,
    ParentView,
    Route,
    link_to,
    render_parent,
    render_reply,
    route,
)
from tests.conftest import SAMPLE_CONFIG

# As Alertmanager 0.25 sends it (the documented webhook_config payload, version 4).
SAMPLE = {
    "receiver": "platform-bot",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "service": "checkout", "env": "prod"},
            "annotations": {"summary": "Errors up"},
            "startsAt": "2026-11-27T08:00:00.123+01:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom:9090/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+1&g0.tab=1",
            "fingerprint": "1a30ba71cca2921f",
        }
    ],
    "groupLabels": {"alertname": "HighErrorRate"},
    "commonLabels": {"alertname": "HighErrorRate", "service": "checkout", "env": "prod"},
    "commonAnnotations": {"summary": "Errors up"},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}:{alertname="HighErrorRate"}',
    "truncatedAlerts": 0,
    "someFutureField": True,
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(load_platform_model(SAMPLE_CONFIG))


def test_a_version_4_payload_parses_with_times_in_utc() -> None:
    notification = parse(json.dumps(SAMPLE).encode())
    first = notification.alerts[0]
    assert first.starts_at == datetime(2026, 11, 27, 7, 0, 0, 123000, tzinfo=UTC)
    assert first.ends_at is None  # Alertmanager's zero time means "not ended"
    assert first.expression() == "rate(x[5m]) > 1"
    assert len(notification.group_key_hash()) == 64


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff", "not JSON"),
        (b'"text"', "must be a JSON object"),
        (json.dumps({**SAMPLE, "version": "3"}).encode(), "unsupported payload version '3'"),
        (json.dumps({**SAMPLE, "groupKey": ""}).encode(), "groupKey"),
        (json.dumps({**SAMPLE, "alerts": [{"status": "firing"}]}).encode(), "alerts.0.labels"),
        (json.dumps({**SAMPLE, "status": "pending"}).encode(), "status"),
    ],
)
def test_malformed_payloads_say_what_is_wrong(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(reason)):
        parse(body)


def test_expression_of_a_url_without_one_is_none() -> None:
    assert expression_of("https://grafana.example.com/alerting/1") is None
    assert expression_of(None) is None


def test_routing_by_service_team_and_fallback(catalog: Catalog) -> None:
    assert route(catalog, {"service": "checkout"}).channel == "#payments"
    assert route(catalog, {"service": "search-api"}).team == "search"
    assert route(catalog, {"team": "search"}).channel == "#search"
    unknown = route(catalog, {"service": "billing"})
    assert unknown.channel == "#platform" and unknown.service is None
    assert unknown.note is not None and "`billing` is not in the catalog" in unknown.note
    assert route(catalog, {"alertname": "Watchdog"}) == Route("#platform", None, None, None)


def test_links_that_could_break_out_are_dropped() -> None:
    assert link_to("https://grafana.example.com/d/x?a=1&b=2", "Grafana") == (
        "<https://grafana.example.com/d/x?a=1&amp;b=2|Grafana>"
    )
    assert link_to("https://x|<!channel>", "Runbook") is None
    assert link_to("javascript:alert(1)", "Runbook") is None


def test_parent_and_reply_escape_labels() -> None:
    start = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    hostile = {"alertname": "<!channel> & *x*", "service": "<@U01ALICE>"}
    text, blocks = render_parent(
        ParentView(
            group_id="g1",
            status="firing",
            common_labels=hostile,
            common_annotations={"summary": "<!here>"},
            firing=1,
            resolved=0,
            since=start,
            resolved_at=None,
        )
    )
    shown = text + json.dumps(blocks)
    assert "<!channel>" not in shown and "<!here>" not in shown and "<@U01ALICE>" not in shown
    assert "&lt;!channel&gt; &amp; *x*" in text
    reply = render_reply(
        [AlertLine("firing", {"instance": "<!channel>"}, {}, start, None)],
        common_labels={},
        common_summary=None,
        all_resolved=False,
    )
    assert "<!channel>" not in reply and "&lt;!channel&gt;" in reply


def test_a_reply_lists_twenty_changes_then_counts_the_rest() -> None:
    start = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    changes = [AlertLine("firing", {"pod": f"p{i}"}, {}, start, None) for i in range(25)]
    reply = render_reply(changes, common_labels={}, common_summary=None, all_resolved=True)
    assert reply.count("Firing") == 20 and "…and 5 more." in reply
    assert reply.endswith("*All alerts in this group are resolved.*")


@pytest.mark.parametrize(
    ("choice", "custom", "expected"),
    [("4h", None, timedelta(hours=4)), ("custom", "90m", timedelta(minutes=90))],
)
def test_silence_durations(choice: str, custom: str | None, expected: timedelta) -> None:
    assert parse_duration(choice, custom) == expected


@pytest.mark.parametrize(("choice", "custom"), [("custom", "soon"), ("custom", "30d"), (None, "")])
def test_bad_silence_durations_say_what_to_type(choice: str | None, custom: str) -> None:
    with pytest.raises(ValueError, match=r"5m to 7d|such as 90m"):
        parse_duration(choice, custom)
