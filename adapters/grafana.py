"""Grafana: links to a service's dashboard over the time range that matters.

Alert threads and rollout messages link to the dashboard around the alert or rollout.
`GrafanaLinks` only builds URLs (no API calls, no token): `{base}/d/{uid}` with `from`
and `to` in epoch milliseconds and one `var-<name>=<value>` per dashboard variable
(https://grafana.com/docs/grafana/latest/visualizations/dashboards/build-dashboards/
create-dashboard-url-variables/). Every part is percent-encoded, so a value with `&`,
`#` or spaces cannot change the link's meaning.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode, urlsplit

from kernel.ports.systems import DashboardLinks

__all__ = ["DashboardLinks", "GrafanaLinks"]


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class GrafanaLinks:
    """`DashboardLinks` for one Grafana, e.g. `GrafanaLinks("https://grafana.example.com")`."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"GRAFANA_URL must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")

    def dashboard(
        self,
        uid: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        variables: dict[str, str] | None = None,
    ) -> str:
        """The dashboard `uid`, from `start` to `end` (either may be left out), with
        `variables` set."""
        params: list[tuple[str, str]] = []
        if start is not None:
            params.append(("from", str(epoch_ms(start))))
        if end is not None:
            params.append(("to", str(epoch_ms(end))))
        for name, value in (variables or {}).items():
            params.append((f"var-{name}", value))
        url = f"{self.base_url}/d/{quote(uid, safe='')}"
        return f"{url}?{urlencode(params, quote_via=quote)}" if params else url
