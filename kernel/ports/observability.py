"""Alertmanager silences and alerts, Prometheus queries, Grafana links.

See kernel.ports.systems for what every port promises (async, idempotent, errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def filter(self) -> str:
        """As an Alertmanager API filter, e.g. `service="checkout"` (value escaped)."""
        operator = ("=" if self.is_equal else "!") + ("~" if self.is_regex else "")
        if operator == "!":
            operator = "!="
        value = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{operator}"{value}"'


class AlertSilences(Protocol):
    """Alertmanager's v2 API: silences and the alerts it holds."""

    async def create_silence(
        self,
        *,
        matchers: list[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """The new silence's id."""
        ...

    async def expire_silence(self, silence_id: str) -> bool:
        """True if it was active."""
        ...

    async def alerts(self, *, filters: list[str], active: bool = True) -> list[dict[str, Any]]:
        """Alerts matching `filters` (e.g. `service="checkout"`), as the API returns them."""
        ...


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and (unix time, value) points."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


class MetricsQuery(Protocol):
    """Prometheus instant and range queries."""

    async def query(self, expr: str) -> list[Sample]: ...

    async def query_range(
        self, expr: str, *, start: datetime, end: datetime, step_seconds: float
    ) -> list[Series]:
        """`GET /api/v1/query_range`: one request, every series over [start, end]."""
        ...


class DashboardLinks(Protocol):
    """Grafana URLs: a dashboard, over a time range, with variables."""

    def dashboard(
        self,
        uid: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        variables: dict[str, str] | None = None,
    ) -> str: ...
