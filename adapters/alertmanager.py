"""Alertmanager: silences from the Silence button, and the alerts `/platform status` shows.

`AlertmanagerClient` implements `AlertSilences` on aiohttp against Alertmanager's v2 API
(https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml):

- `POST /api/v2/silences` with `matchers` (`name`, `value`, `isRegex`, `isEqual`),
  `startsAt`, `endsAt`, `createdBy`, `comment` answers `{"silenceID": ...}`.
- `DELETE /api/v2/silence/{id}` expires a silence. Alertmanager 0.25 answers 200 for
  one that is already expired and 500 "silence not found" for an unknown id (newer
  versions 404), so `expire_silence` first reads `GET /api/v2/silence/{id}` to know
  whether it was still in force.
- `GET /api/v2/alerts?filter=<matcher>&active=<bool>` lists alerts; each has
  `status.state` `active`, `suppressed` (silenced or inhibited) or `unprocessed`.

Errors: 400 bodies are a JSON string (`"Failed to create silence: ..."`), schema
validation errors (422) are `{"code": ..., "message": ...}`; either becomes an
`AdapterError("Alertmanager", <that text>, status=<code>)`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import aiohttp
from yarl import URL

from kernel.errors import AdapterError
from kernel.ports.systems import AlertSilences, Matcher

__all__ = ["AlertSilences", "AlertmanagerClient"]

SYSTEM = "Alertmanager"
MAX_ERROR_LENGTH = 300
"""Longer error bodies (a proxy's HTML page, say) are cut, to stay readable in Slack."""

_SILENCE_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def rfc3339(moment: datetime) -> str:
    """`moment` in UTC as RFC 3339; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def error_text(body: str) -> str:
    """The API's own words from an error body (a JSON string, or an object's message)."""
    text = body.strip()
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, str):
        text = decoded.strip()
    elif isinstance(decoded, dict) and isinstance(decoded.get("message"), str):
        text = decoded["message"]
    if len(text) > MAX_ERROR_LENGTH:
        text = text[: MAX_ERROR_LENGTH - 1] + "…"
    return text or "no error message"


class AlertmanagerClient:
    """`AlertSilences` over Alertmanager's v2 HTTP API."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._base = URL(url.rstrip("/"))
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"AlertmanagerClient(url={self._where()!r})"

    def _where(self) -> str:
        """The server's address for messages, without any credentials in the URL."""
        return str(self._base.with_user(None))

    def _session_for_call(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (a later call opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """(status, decoded JSON or None) for 2xx and 404; AdapterError otherwise."""
        url = self._base / path.lstrip("/")
        try:
            async with self._session_for_call().request(
                method, url, params=params, json=body
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise AdapterError(
                SYSTEM, f"cannot reach Alertmanager at {self._where()} ({reason})"
            ) from exc
        if status == 404:
            return status, None
        if 200 <= status < 300:
            try:
                return status, json.loads(text) if text.strip() else None
            except ValueError as exc:
                raise AdapterError(
                    SYSTEM, f"answered with something that is not JSON ({status})"
                ) from exc
        raise AdapterError(SYSTEM, f"{error_text(text)} (HTTP {status})", status=status)

    def _unexpected(self, status: int, what: str) -> AdapterError:
        if status == 404:
            return AdapterError(
                SYSTEM, f"no Alertmanager v2 API at {self._where()} (HTTP 404)", status=404
            )
        return AdapterError(SYSTEM, f"unexpected answer to {what} (HTTP {status})", status=status)

    async def create_silence(
        self,
        *,
        matchers: list[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """Create a silence; returns its id."""
        if not matchers:
            raise AdapterError(SYSTEM, "a silence needs at least one label matcher")
        body = {
            "matchers": [
                {"name": m.name, "value": m.value, "isRegex": m.is_regex, "isEqual": m.is_equal}
                for m in matchers
            ],
            "startsAt": rfc3339(starts_at),
            "endsAt": rfc3339(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        status, answer = await self._request("POST", "api/v2/silences", body=body)
        if not isinstance(answer, dict) or "silenceID" not in answer:
            raise self._unexpected(status, "a new silence")
        return str(answer["silenceID"])

    async def expire_silence(self, silence_id: str) -> bool:
        """Expire the silence; True if it was active or pending, False if it was already
        expired or never existed."""
        if not _SILENCE_ID.fullmatch(silence_id):
            raise AdapterError(SYSTEM, f"{silence_id[:64]!r} is not a silence id")
        path = f"api/v2/silence/{silence_id}"
        try:
            status, silence = await self._request("GET", path)
        except AdapterError as exc:
            if exc.status == 500 and "not found" in exc.message:
                return False
            raise
        if status == 404:
            return False
        state = silence.get("status", {}).get("state") if isinstance(silence, dict) else None
        if state == "expired":
            return False
        try:
            await self._request("DELETE", path)
        except AdapterError as exc:
            if exc.status == 500 and "not found" in exc.message:
                return False  # expired and garbage-collected in between
            raise
        return True

    async def alerts(self, *, filters: list[str], active: bool = True) -> list[dict[str, Any]]:
        """Alerts matching every filter (e.g. `service="checkout"`); `active=False` hides
        the active ones (leaving silenced, inhibited and unprocessed), as the API does."""
        params = [("filter", f) for f in filters]
        params.append(("active", "true" if active else "false"))
        status, answer = await self._request("GET", "api/v2/alerts", params=params)
        if not isinstance(answer, list):
            raise self._unexpected(status, "the alert list")
        return answer
