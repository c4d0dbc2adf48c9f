"""Prometheus metrics, on a registry of our own so two bots in one test never collide.

Besides ours, the registry holds prometheus_client's process collector
(`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, ...;
Linux only) and its Python collectors (`python_info`, `python_gc_*`), as the default
registry would. docs/operations.md says what each of ours means and which alerts to set.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""Seconds: a rollback takes tens of seconds, a new service a minute or more."""


class Metrics:
    """Every metric the bot exports at GET /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.requests = Counter(
            "platform_bot_requests",
            "Slack requests handled, by command (or interaction) and outcome",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "platform_bot_ack_seconds",
            "Time from receiving a Slack request to acknowledging it",
            ["kind"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 3, 5),
            registry=self.registry,
        )
        self.runs = Gauge(
            "platform_bot_runs", "Runs in the database by state", ["state"], registry=self.registry
        )
        self.run_transitions = Counter(
            "platform_bot_run_transitions",
            "Runs that reached a state, by Action kind",
            ["kind", "state"],
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "platform_bot_run_duration_seconds",
            "Time from a Run's first step starting to its end, by Action kind and outcome",
            ["action", "outcome"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.outbox_lag = Gauge(
            "platform_bot_outbox_lag_seconds",
            "Age of the oldest message still waiting in the outbox (0 when it is empty)",
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "platform_bot_outbox_depth",
            "Slack calls waiting in the outbox",
            registry=self.registry,
        )
        self.slack_api_errors = Counter(
            "platform_bot_slack_api_errors",
            "Slack Web API calls that failed, by method and error",
            ["method", "error"],
            registry=self.registry,
        )

        self.alert_notifications = Counter(
            "platform_bot_alert_notifications",
            "Alertmanager webhook calls, by outcome (queued, unauthorized, too_large, ...)",
            ["outcome"],
            registry=self.registry,
        )
        self.alert_notifications_applied = Counter(
            "platform_bot_alert_notifications_applied",
            "Queued Alertmanager notifications applied to their alert threads",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
