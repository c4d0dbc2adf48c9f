"""Prometheus metrics, on a registry of our own so two bots in one test never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every metric the bot exports at GET /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
