"""The observability adapters against the real Prometheus and Alertmanager from Debian.

One Prometheus and one Alertmanager serve the whole module (started once, on the
module's event loop): a rule on `checkout_errors`, a metric the test sets, fires;
Alertmanager posts its webhook (with the bearer token) to a recorder; the adapters
silence it, query it, and see it resolve. Grafana links and the metric target's
exposition format are checked without servers at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
import pytest_asyncio

from adapters.alertmanager import AlertmanagerClient, error_text
from adapters.grafana import GrafanaLinks
from adapters.prometheus import PrometheusClient
from kernel.errors import AdapterError
from kernel.ports.systems import Matcher
from sandbox.standins.observability import (
    AlertmanagerServer,
    MetricTarget,
    ObservabilityUnavailable,
    PrometheusServer,
    free_port,
)
from tests.integration.observability_fixtures import (
    Delivery,
    WebhookRecorder,
    observability_stack,
)

TOKEN = "webhook-secret-token"
RULES = """
groups:
  - name: checkout
    rules:
      - alert: CheckoutErrors
        expr: checkout_errors > 0
        for: 0s
        labels:
          severity: critical
          service: checkout
        annotations:
          summary: "checkout is failing requests"
          runbook_url: https://runbooks.example.com/checkout
"""
SERVICE = {"service": "checkout"}

module_loop = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Servers:
    target: MetricTarget
    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer
    webhooks: WebhookRecorder
    alerts: AlertmanagerClient
    metrics: PrometheusClient


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers() -> AsyncIterator[Servers]:
    async with (
        WebhookRecorder() as webhooks,
        observability_stack(rules_yaml=RULES, webhook_url=webhooks.url, bearer_token=TOKEN) as s,
    ):
        alerts = AlertmanagerClient(s.alertmanager.url)
        metrics = PrometheusClient(s.prometheus.url)
        try:
            yield Servers(s.target, s.prometheus, s.alertmanager, webhooks, alerts, metrics)
        finally:
            await alerts.close()
            await metrics.close()


def firing(delivery: Delivery) -> bool:
    return delivery.body.get("status") == "firing"


def resolved(delivery: Delivery) -> bool:
    return delivery.body.get("status") == "resolved"


@module_loop
async def test_an_alert_fires_is_silenced_and_resolves(servers: Servers) -> None:
    servers.target.set("checkout_errors", 3, SERVICE)

    # Prometheus fires the rule; Alertmanager posts the group to the webhook.
    delivery = await servers.webhooks.wait_for(firing, timeout=30)
    assert delivery.authorization == f"Bearer {TOKEN}"
    payload = delivery.body
    assert payload["version"] == "4"
    assert payload["receiver"] == "platform-bot"
    assert payload["groupKey"] == '{}:{alertname="CheckoutErrors", service="checkout"}'
    assert payload["groupLabels"] == {"alertname": "CheckoutErrors", "service": "checkout"}
    assert payload["externalURL"] == servers.alertmanager.url
    [alert] = payload["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"]["alertname"] == "CheckoutErrors"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["service"] == "checkout"
    assert alert["annotations"] == {
        "summary": "checkout is failing requests",
        "runbook_url": "https://runbooks.example.com/checkout",
    }
    assert alert["generatorURL"].startswith(servers.prometheus.url)

    # The alert is active in Alertmanager's API.
    [listed] = await servers.alerts.alerts(filters=['service="checkout"'])
    assert listed["status"]["state"] == "active"
    assert listed["fingerprint"] == alert["fingerprint"]

    # A silence with the group's matchers suppresses it; expiring it lifts that.
    now = datetime.now(UTC)
    silence_id = await servers.alerts.create_silence(
        matchers=[Matcher(name, value) for name, value in payload["groupLabels"].items()],
        starts_at=now,
        ends_at=now + timedelta(hours=1),
        created_by="U01ALICE",
        comment="deploying a fix",
    )
    [listed] = await servers.alerts.alerts(filters=['service="checkout"'])
    assert listed["status"]["state"] == "suppressed"
    assert listed["status"]["silencedBy"] == [silence_id]
    assert await servers.alerts.alerts(filters=['service="checkout"'], active=False) == [listed]

    assert await servers.alerts.expire_silence(silence_id) is True
    assert await servers.alerts.expire_silence(silence_id) is False
    [listed] = await servers.alerts.alerts(filters=['service="checkout"'])
    assert listed["status"]["state"] == "active"

    # Prometheus sees the value and the rule's expression.
    [sample] = await servers.metrics.query("checkout_errors")
    assert sample.value == 3.0
    assert sample.labels["__name__"] == "checkout_errors"
    assert sample.labels["service"] == "checkout"
    [sample] = await servers.metrics.query("checkout_errors > 0")
    assert sample.value == 3.0
    [sample] = await servers.metrics.query("sum by (service) (checkout_errors)")
    assert sample.labels == SERVICE

    # Back to zero: the rule stops matching and Alertmanager sends the resolution.
    servers.target.set("checkout_errors", 0, SERVICE)
    done = await servers.webhooks.wait_for(resolved, timeout=30)
    assert done.authorization == f"Bearer {TOKEN}"
    assert done.body["groupKey"] == payload["groupKey"]
    [alert] = done.body["alerts"]
    assert alert["status"] == "resolved"
    assert alert["labels"]["service"] == "checkout"
    assert await servers.metrics.query("checkout_errors > 0") == []


@module_loop
async def test_silence_with_matchers_of_every_kind(servers: Servers) -> None:
    now = datetime.now(UTC)
    silence_id = await servers.alerts.create_silence(
        matchers=[
            Matcher("service", "check.*", is_regex=True),
            Matcher("severity", "info", is_equal=False),
        ],
        starts_at=now + timedelta(minutes=5),
        ends_at=now + timedelta(hours=1),
        created_by="U02BOB",
        comment="maintenance window",
    )
    assert await servers.alerts.expire_silence(silence_id) is True  # pending counts


@module_loop
async def test_alertmanager_errors_carry_its_message(servers: Servers) -> None:
    now = datetime.now(UTC)
    with pytest.raises(AdapterError) as caught:
        await servers.alerts.create_silence(
            matchers=[Matcher("service", "checkout")],
            starts_at=now,
            ends_at=now - timedelta(minutes=1),
            created_by="U01ALICE",
            comment="backwards",
        )
    assert caught.value.system == "Alertmanager"
    assert caught.value.status == 400
    assert "start time must be before end time" in caught.value.message

    with pytest.raises(AdapterError) as caught:
        await servers.alerts.alerts(filters=['service="checkout'])
    assert caught.value.status == 400
    assert "unescaped double quote" in caught.value.message

    with pytest.raises(AdapterError) as caught:
        await servers.alerts.expire_silence("not-a-uuid")
    assert caught.value.status == 422
    assert "uuid" in caught.value.message

    with pytest.raises(AdapterError, match="is not a silence id"):
        await servers.alerts.expire_silence("../silences")
    assert await servers.alerts.expire_silence("2f8b3a52-5f9e-4c55-9b8e-0d1c2e3f4a5b") is False
    assert await servers.alerts.alerts(filters=['service="no-such-service"']) == []


@module_loop
async def test_prometheus_queries_and_errors(servers: Servers) -> None:
    [sample] = await servers.metrics.query("1 + 1")
    assert sample == type(sample)(labels={}, value=2.0)

    with pytest.raises(AdapterError) as caught:
        await servers.metrics.query("sum(checkout_errors")
    assert caught.value.system == "Prometheus"
    assert caught.value.status == 400
    assert "parse error" in caught.value.message
    assert "HTTP Status Code" not in str(caught.value)

    with pytest.raises(AdapterError, match="range vector"):
        await servers.metrics.query("checkout_errors[1m]")


async def test_unreachable_servers_are_adapter_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    alerts = AlertmanagerClient(url, timeout=2)
    try:
        with pytest.raises(AdapterError, match="cannot reach Alertmanager"):
            await alerts.alerts(filters=[])
    finally:
        await alerts.close()
    metrics = PrometheusClient(url, timeout=2)
    with pytest.raises(AdapterError, match="cannot reach Prometheus"):
        await metrics.query("up")
    await metrics.close()


async def test_a_server_that_cannot_start_says_why() -> None:
    broken = PrometheusServer(rules_yaml="groups: [{name: x, rules: [{alert: A}]}]", targets=[])
    with pytest.raises(RuntimeError, match="Prometheus exited") as caught:
        await broken.start()
    assert "field 'expr' must be set" in str(caught.value)
    with pytest.raises(RuntimeError, match="not started"):
        broken.url  # noqa: B018


async def test_a_missing_binary_is_reported_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    server = AlertmanagerServer(webhook_url="http://127.0.0.1:1/webhook", bearer_token=None)
    with pytest.raises(ObservabilityUnavailable, match="apt-get install") as caught:
        await server.start()
    assert "PLATFORM_BOT_ALERTMANAGER" in str(caught.value)


def test_alertmanager_error_bodies_become_short_messages() -> None:
    assert error_text('"Failed to create silence: bad matcher"\n') == (
        "Failed to create silence: bad matcher"
    )
    assert error_text('{"code": 601, "message": "silenceID in path must be of type uuid"}') == (
        "silenceID in path must be of type uuid"
    )
    page = "<html>" + "x" * 5000 + "</html>"
    assert error_text(page) == page[:299] + "…"
    assert error_text("") == "no error message"


def test_credentials_in_a_url_never_show() -> None:
    assert "hunter2" not in repr(AlertmanagerClient("http://bot:hunter2@am.example:9093"))
    assert "hunter2" not in repr(PrometheusClient("http://bot:hunter2@prom.example:9090"))
    server = AlertmanagerServer(webhook_url="http://127.0.0.1:1/webhook", bearer_token=TOKEN)
    assert TOKEN not in repr(server)


# -- Grafana links (no server) -----------------------------------------------------------


def test_grafana_dashboard_link_with_time_range_and_variables() -> None:
    links = GrafanaLinks("https://grafana.example.com/")
    link = links.dashboard(
        "svc-overview",
        start=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        end=datetime(2026, 1, 2, 4, 4, 5, 250000, tzinfo=UTC),
        variables={"service": "checkout", "env": "prod"},
    )
    assert link == (
        "https://grafana.example.com/d/svc-overview"
        "?from=1767323045000&to=1767326645250&var-service=checkout&var-env=prod"
    )


def test_grafana_link_quotes_every_part() -> None:
    link = GrafanaLinks("https://grafana.example.com/sub").dashboard(
        "a/b c", variables={"query": 'x&y=1 #"z"'}
    )
    parts = urlsplit(link)
    assert parts.path == "/sub/d/a%2Fb%20c"
    assert parts.fragment == ""
    assert parse_qsl(parts.query) == [("var-query", 'x&y=1 #"z"')]


def test_grafana_link_times_are_utc_and_optional() -> None:
    links = GrafanaLinks("http://grafana:3000")
    assert links.dashboard("uid") == "http://grafana:3000/d/uid"
    naive = links.dashboard("uid", start=datetime(1970, 1, 1, 0, 0, 1))
    aware = links.dashboard(
        "uid", start=datetime(1970, 1, 1, 2, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    )
    assert naive == aware == "http://grafana:3000/d/uid?from=1000"
    with pytest.raises(ValueError, match="GRAFANA_URL"):
        GrafanaLinks("grafana.example.com")


# -- the metric target's exposition format (no server) -----------------------------------


def test_metric_target_exposition() -> None:
    target = MetricTarget()
    target.set("checkout_errors", 2, {"service": "checkout", "path": 'a"b\\c\nd'})
    target.set("queue_depth", float("inf"))
    target.set("ratio", float("nan"))
    assert target.exposition() == (
        "# TYPE checkout_errors gauge\n"
        'checkout_errors{path="a\\"b\\\\c\\nd",service="checkout"} 2.0\n'
        "# TYPE queue_depth gauge\n"
        "queue_depth +Inf\n"
        "# TYPE ratio gauge\n"
        "ratio NaN\n"
    )
    target.remove("queue_depth")
    target.remove("ratio")
    target.remove("checkout_errors", {"service": "checkout", "path": 'a"b\\c\nd'})
    assert target.exposition() == ""
    with pytest.raises(ValueError, match="metric name"):
        target.set("bad-name", 1)
    with pytest.raises(ValueError, match="label name"):
        target.set("ok", 1, {"__reserved": "x"})
