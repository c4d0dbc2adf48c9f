"""Which PromQL each service is watched with, and how it is filled in.

A service's catalog entry may list `health_queries`; without them it gets the golden
path's three, which every template's service exposes (http_requests_total with a `code`
label, the http_request_duration_seconds histogram, and kube-state-metrics' restarts):
error ratio, p99 latency, restarts. `{service}`, `{env}` and `{namespace}` are replaced
by label-escaped values, so a name can never break out of its `"..."`.
"""

from __future__ import annotations

from catalog import Catalog
from catalog.model import HealthQuery

GOLDEN_PATH: tuple[HealthQuery, ...] = (
    HealthQuery(
        name="error ratio",
        unit="ratio",
        expr='sum(rate(http_requests_total{service="{service}",env="{env}",code=~"5.."}[1m]))'
        ' / sum(rate(http_requests_total{service="{service}",env="{env}"}[1m]))',
        max_increase=0.5,
        min_delta=0.01,
    ),
    HealthQuery(
        name="p99 latency",
        unit="seconds",
        expr="histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
        '{service="{service}",env="{env}"}[5m])))',
        max_increase=0.5,
        min_delta=0.05,
    ),
    HealthQuery(
        name="restarts",
        unit="count",
        expr='sum(increase(kube_pod_container_status_restarts_total{namespace="{namespace}"}[5m]))',
        max_increase=0.0,
        min_delta=1.0,
    ),
)
"""The golden path's health queries (templates expose these metrics)."""


def label_value(value: str) -> str:
    """`value` escaped for a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def health_queries(catalog: Catalog, service: str) -> tuple[HealthQuery, ...]:
    """The service's own queries, or the golden path's."""
    return catalog.service(service).health_queries or GOLDEN_PATH


def promql(query: HealthQuery, *, service: str, env: str, namespace: str) -> str:
    """The query's expression for this service in this environment."""
    return (
        query.expr.replace("{service}", label_value(service))
        .replace("{env}", label_value(env))
        .replace("{namespace}", label_value(namespace))
    )
