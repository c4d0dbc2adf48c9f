"""Prometheus: the current values behind an alert (the Show query button, `/platform status`)
and the health queries' history around a deploy (features/verification, `query_range`).

`PrometheusClient` implements `MetricsQuery` on prometheus-api-client's
`PrometheusConnect.custom_query`, which calls the instant query API
(`GET /api/v1/query`, https://prometheus.io/docs/prometheus/latest/querying/api/), and
`custom_query_range` (`GET /api/v1/query_range`: `start`, `end`, `step`; answers a
matrix, each series `{"metric": {...}, "values": [[<unix time>, "<value>"], ...]}`).
The client blocks (requests), so each query runs in `asyncio.to_thread`; constructing
it opens no connection.

The API answers `{"status": "success", "data": {"resultType", "result"}}`; errors are
`{"status": "error", "errorType", "error"}` with 400 (bad PromQL), 422 (the expression
cannot be executed) or 503 (timed out). prometheus-api-client raises those as
`PrometheusApiClientException("HTTP Status Code 400 (b'<body>')")`; we take the API's
`error` text back out of it, so the user reads Prometheus's own words.

TLS certificates are verified unless `verify_tls=False` (prometheus-api-client's
`disable_ssl`). Connection failures are retried once; a query is never retried (it may
be expensive, and a 503 says why it failed).
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import re
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry
from yarl import URL

from kernel.errors import AdapterError
from kernel.ports.systems import MetricsQuery, Sample, Series

__all__ = ["MetricsQuery", "PrometheusClient", "Sample", "Series"]

SYSTEM = "Prometheus"

_CLIENT_ERROR = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)


def _api_error(exc: PrometheusApiClientException) -> AdapterError:
    """The API's own error text and status from prometheus-api-client's exception."""
    match = _CLIENT_ERROR.match(str(exc))
    if match is None:
        return AdapterError(SYSTEM, str(exc))
    status = int(match.group(1))
    message = f"HTTP {status}"
    try:
        body = ast.literal_eval(match.group(2))
        decoded = json.loads(body)
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
            message = decoded["error"]
    except (ValueError, SyntaxError):
        pass
    return AdapterError(SYSTEM, message, status=status)


def to_samples(result: Any) -> list[Sample]:
    """An instant query's `result` as Samples: a vector's series, or a scalar's value."""
    if not isinstance(result, list):
        raise AdapterError(SYSTEM, "unexpected answer to a query")
    if len(result) == 2 and isinstance(result[0], int | float):  # scalar or string
        try:
            return [Sample(labels={}, value=float(result[1]))]
        except ValueError as exc:
            raise AdapterError(SYSTEM, "the expression is a string, not a number") from exc
    samples: list[Sample] = []
    for series in result:
        if not isinstance(series, dict) or "value" not in series:
            raise AdapterError(
                SYSTEM,
                "the expression is a range vector; query an instant vector "
                "(drop the `[...]` range or wrap it in a function such as rate())",
            )
        labels = {str(k): str(v) for k, v in series.get("metric", {}).items()}
        samples.append(Sample(labels=labels, value=float(series["value"][1])))
    return samples


def to_series(result: Any) -> list[Series]:
    """A range query's matrix as Series (NaN points are kept: a gap in the chart)."""
    if not isinstance(result, list):
        raise AdapterError(SYSTEM, "unexpected answer to a range query")
    series: list[Series] = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("values"), list):
            raise AdapterError(SYSTEM, "unexpected answer to a range query")
        labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
        points = tuple((float(t), _number(v)) for t, v in item["values"])
        series.append(Series(labels=labels, points=points))
    return series


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class PrometheusClient:
    """`MetricsQuery` on prometheus-api-client."""

    def __init__(self, url: str, *, timeout: float = 10.0, verify_tls: bool = True) -> None:
        self._where = str(URL(url).with_user(None))
        self._connect = PrometheusConnect(
            url.rstrip("/"),
            disable_ssl=not verify_tls,
            timeout=timeout,  # type: ignore[arg-type]  # typed int; requests takes float
            retry=Retry(total=1, read=0, backoff_factor=0.2),
        )

    def __repr__(self) -> str:
        return f"PrometheusClient(url={self._where!r})"

    async def query(self, expr: str) -> list[Sample]:
        """Evaluate `expr` now; one Sample per series (labels include `__name__` when the
        expression is a plain selector)."""
        try:
            result = await asyncio.to_thread(self._connect.custom_query, expr)
        except PrometheusApiClientException as exc:
            raise _api_error(exc) from exc
        except requests.RequestException as exc:
            raise AdapterError(
                SYSTEM, f"cannot reach Prometheus at {self._where} ({type(exc).__name__})"
            ) from exc
        return to_samples(result)

    async def query_range(
        self, expr: str, *, start: datetime, end: datetime, step_seconds: float
    ) -> list[Series]:
        """Evaluate `expr` every `step_seconds` over [start, end] in one request."""
        try:
            result = await asyncio.to_thread(
                self._connect.custom_query_range, expr, start, end, f"{step_seconds:g}"
            )
        except PrometheusApiClientException as exc:
            raise _api_error(exc) from exc
        except requests.RequestException as exc:
            raise AdapterError(
                SYSTEM, f"cannot reach Prometheus at {self._where} ({type(exc).__name__})"
            ) from exc
        return to_series(result)

    async def close(self) -> None:
        """Close the HTTP session."""
        self._connect.close()
