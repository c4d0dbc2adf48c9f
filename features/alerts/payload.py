"""The Alertmanager webhook payload (version 4), validated before anything is stored.

Alertmanager POSTs one JSON object per notification of an alert group: the group's
key, labels common to its alerts, and every alert (firing and, with `send_resolved`,
resolved) with its fingerprint and times. Format documented at
https://prometheus.io/docs/alerting/latest/configuration/#webhook_config.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from features.kit.webhooks import TooDeep, parse_json

ZERO_TIME_YEAR = 1
"""Alertmanager sends `0001-01-01T00:00:00Z` for "no end time yet"."""


class PayloadError(ValueError):
    """The body is not a version 4 Alertmanager notification; the message says why."""


class _Model(BaseModel):
    # Alertmanager adds fields over time (truncatedAlerts came in 0.22); ignore unknown ones.
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Alert(_Model):
    """One alert as Alertmanager reports it."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(alias="startsAt")
    """None only if Alertmanager sent its zero time."""
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = Field(min_length=1, max_length=64)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None or value.year <= ZERO_TIME_YEAR:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def expression(self) -> str | None:
        """The PromQL expression from the generator URL (`g0.expr`), if there is one."""
        return expression_of(self.generator_url)


class Notification(_Model):
    """One webhook delivery: a group's current state."""

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", min_length=1)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = ""
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    alerts: list[Alert]

    def group_key_hash(self) -> str:
        return group_key_hash(self.group_key)


def expression_of(generator_url: str | None) -> str | None:
    """The PromQL expression in a Prometheus generator URL (`/graph?g0.expr=...`)."""
    values = parse_qs(urlsplit(generator_url or "").query).get("g0.expr")
    return values[0] if values else None


def group_key_hash(group_key: str) -> str:
    """The groupKey's sha256: unique per group, and short enough for an index."""
    return hashlib.sha256(group_key.encode()).hexdigest()


def parse(body: bytes) -> Notification:
    """Validate a webhook body; PayloadError says what is wrong, in one line."""
    try:
        data = parse_json(body)
    except TooDeep as exc:
        raise PayloadError(str(exc)) from None
    except ValueError as exc:
        raise PayloadError(f"the body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PayloadError("the body must be a JSON object")
    if data.get("version") != "4":
        raise PayloadError(
            f'unsupported payload version {data.get("version")!r}; this receiver reads "4"'
        )
    try:
        return Notification.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PayloadError(f"{where}: {first['msg']}{more}") from None
