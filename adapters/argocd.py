"""Argo CD: sync an Application to a revision, roll it back, and turn automated sync off/on.

`ArgoCDClient` implements `GitOps` on Argo CD's REST API (grpc-gateway in front of its gRPC
API; https://argo-cd.readthedocs.io/en/stable/developer-guide/api-docs/) with aiohttp:
there is no official Python SDK, and four calls do not need one. The token is an Argo CD
API token (``argocd account generate-token``), sent as ``Authorization: Bearer``; it never
appears in a message or a log line.

Argo CD answers errors as gRPC statuses, ``{"error": ..., "code": <gRPC code>, "message":
...}``. A rollback (or a sync to another revision) while automated sync is on is refused
with code 9 (FailedPrecondition) and a message that names auto-sync: that becomes
`AutoSyncEnabled`, so the bot can offer to turn automated sync off first. Every other
refusal is an `AdapterError` carrying Argo's own message and the HTTP status.

Argo CD answers 403 "permission denied" for an Application that does not exist, so no one
can probe names; only when the request names the Application's project does it answer
404. Give `project` to get None for a missing Application from `application()`.

What runs is the newest ``status.history`` entry (else the last successful operation's
``syncResult.revision``), never ``status.sync.revision``: that one is what git's
``targetRevision`` resolves to, and stays at HEAD after a rollback (argo-cd
``controller/state.go``, ``controller/sync.go``). Automated sync is turned off with
``automated.enabled: false`` where the server keeps that field (Argo CD 3.1+; older
servers drop it when they read the patched Application back, ``server/application/
application.go`` Patch), which the PATCH's answer shows; otherwise ``automated`` is removed
and the caller keeps the block to restore it exactly.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import aiohttp
from yarl import URL

from kernel.errors import AdapterError
from kernel.ports.systems import (
    AUTOMATED_FIELDS,
    AutoSyncEnabled,
    GitOps,
    GitOpsApplication,
    GitOpsHistoryEntry,
)

__all__ = ["ArgoCDClient", "GitOps"]

SYSTEM = "Argo CD"

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
"""An Application name is a Kubernetes object name (DNS-1123 subdomain)."""

_FAILED_PRECONDITION = 9

APPSET_LABEL = "argocd.argoproj.io/application-set-name"


class ArgoCDClient:
    """`GitOps` on Argo CD's REST API; one aiohttp session, opened on first use."""

    def __init__(
        self, url: str, token: str, *, timeout: float = 10.0, project: str | None = None
    ) -> None:
        self._url = url.rstrip("/")
        self._origin = str(URL(self._url).origin())
        """Scheme, host and port only: what an error may name (never userinfo)."""
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._project = project
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # GitOps

    async def application(self, name: str) -> GitOpsApplication | None:
        """The Application, or None if Argo CD says it does not exist (404)."""
        params = {"project": self._project} if self._project else None
        status, body = await self._call("GET", name, params=params)
        if status == 404:
            return None
        self._raise_for(status, body, doing=f"reading application {name}")
        return _application(body)

    async def sync(self, name: str, *, revision: str) -> str:
        """Start a sync of `name` to `revision`; Argo runs it in the background. Returns
        ``operation.sync.revision`` from the answer: what Argo resolved `revision` to."""
        request = {"name": name, "revision": revision, "prune": False, "dryRun": False}
        status, body = await self._call("POST", name, "sync", json_body=self._scoped(request))
        self._raise_for(status, body, doing=f"syncing {name} to {revision}")
        resolved = _dig(body, "operation", "sync", "revision")
        return str(resolved) if resolved else revision

    async def rollback(self, name: str, *, history_id: int) -> None:
        """Start a rollback of `name` to history entry `history_id`.

        AutoSyncEnabled when automated sync is on (Argo's own refusal).
        """
        request = {"name": name, "id": history_id, "prune": False, "dryRun": False}
        status, body = await self._call("POST", name, "rollback", json_body=self._scoped(request))
        self._raise_for(status, body, doing=f"rolling back {name} to history id {history_id}")

    async def disable_auto_sync(self, name: str) -> str:
        """Off with ``automated.enabled: false`` (a merge patch keeps ``prune``,
        ``selfHeal`` and ``allowEmpty``); if the answer shows the server dropped the field
        (Argo CD before 3.1), off by removing ``automated``."""
        answer = await self._patch_automated(name, {"enabled": False}, doing="turning off")
        if not _application(answer).auto_sync:
            return "enabled: false"
        answer = await self._patch_automated(name, None, doing="turning off")
        if _application(answer).auto_sync:
            raise AdapterError(SYSTEM, f"turning off automated sync for {name}: it is still on")
        return "removed"

    async def set_automated(
        self, name: str, automated: dict[str, bool] | None, *, current: dict[str, bool] | None
    ) -> None:
        """Exactly `automated`: a merge patch that sets its fields and removes (null) the
        ones `current` has and it has not."""
        patch: dict[str, bool | None] | None = None
        if automated is not None:
            patch = {**dict.fromkeys(current or {}), **automated}
        answer = await self._patch_automated(name, patch, doing="restoring")
        kept = _application(answer).automated
        if kept != automated:
            raise AdapterError(
                SYSTEM,
                f"restoring automated sync of {name}: asked for {_shown(automated)}, "
                f"Argo CD keeps {_shown(kept)}",
            )

    async def _patch_automated(
        self, name: str, automated: dict[str, Any] | None, *, doing: str
    ) -> dict[str, Any]:
        patch = {"spec": {"syncPolicy": {"automated": automated}}}
        request = {"name": name, "patch": json.dumps(patch), "patchType": "merge"}
        status, body = await self._call("PATCH", name, json_body=self._scoped(request))
        self._raise_for(status, body, doing=f"{doing} automated sync for {name}")
        if not isinstance(body, dict):
            raise AdapterError(SYSTEM, f"{doing} automated sync for {name}: no Application back")
        return body

    # HTTP

    def _scoped(self, request: dict[str, Any]) -> dict[str, Any]:
        return {**request, "project": self._project} if self._project else request

    async def _call(
        self,
        method: str,
        name: str,
        action: str = "",
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body or None) of one request about Application `name`."""
        if not _NAME.fullmatch(name):
            raise AdapterError(
                SYSTEM,
                f"{name!r} is not an Argo CD application name: use lower-case letters, "
                "digits, '-' and '.'",
            )
        url = f"{self._url}/api/v1/applications/{name}" + (f"/{action}" if action else "")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"Authorization": f"Bearer {self._token}"}
            )
        try:
            async with self._session.request(
                method, url, params=params, json=json_body
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
            raise AdapterError(SYSTEM, f"cannot reach {self._origin} ({reason})") from None
        try:
            return status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return status, None

    @staticmethod
    def _raise_for(status: int, body: Any, *, doing: str) -> None:
        if 200 <= status < 300:
            return
        fields = body if isinstance(body, dict) else {}
        message = str(fields.get("message") or fields.get("error") or f"HTTP {status}")
        if status == 401:
            raise AdapterError(
                SYSTEM,
                f"{doing}: the token was refused ({message}); check ARGOCD_TOKEN",
                status=401,
            )
        if status == 403:
            raise AdapterError(
                SYSTEM,
                f"{doing}: permission denied (the application does not exist, or the token "
                "may not use it)",
                status=403,
            )
        if fields.get("code") == _FAILED_PRECONDITION and "auto-sync" in message:
            raise AutoSyncEnabled(
                SYSTEM,
                f"{doing}: automated sync is on, so Argo CD refuses ({message})",
                status=status,
            )
        raise AdapterError(SYSTEM, f"{doing}: {message}", status=status)


# Argo's Application JSON -> our values


def _application(body: Any) -> GitOpsApplication:
    if not isinstance(body, dict):
        raise AdapterError(SYSTEM, "the application answer was not a JSON object")
    metadata, spec, status = (_object(body.get(key)) for key in ("metadata", "spec", "status"))
    state = _object(status.get("operationState"))
    phase, message = state.get("phase"), state.get("message")
    operation_revision = _dig(state, "operation", "sync", "revision")
    result_revision = _dig(state, "syncResult", "revision")
    if body.get("operation"):
        # requested but maybe not yet picked up: operationState may still be the last one's
        if phase != "Running":
            message, result_revision = None, None
        phase = "Running"
        operation_revision = _dig(body, "operation", "sync", "revision")
    history = tuple(
        sorted(
            (_history_entry(h) for h in status.get("history") or () if isinstance(h, dict)),
            key=lambda h: h.id,
        )
    )
    running = history[-1].revision if history else ""
    if not running and phase == "Succeeded" and not _dig(state, "operation", "sync", "dryRun"):
        running = str(result_revision or "")
    return GitOpsApplication(
        name=str(metadata.get("name", "")),
        sync_status=str(_dig(status, "sync", "status") or "Unknown"),
        health_status=str(_dig(status, "health", "status") or "Unknown"),
        running_revision=running,
        target_revision=str(_dig(spec, "source", "targetRevision") or "HEAD"),
        sync_revision=str(_dig(status, "sync", "revision") or ""),
        automated=_automated(_dig(spec, "syncPolicy", "automated")),
        images=tuple(str(i) for i in _dig(status, "summary", "images") or ()),
        history=history,
        owner_application_set=_application_set(metadata),
        operation_phase=str(phase) if phase else None,
        operation_message=str(message) if message else None,
        operation_revision=str(operation_revision) if operation_revision else None,
        result_revision=str(result_revision) if result_revision else None,
    )


def _history_entry(entry: dict[str, Any]) -> GitOpsHistoryEntry:
    """One ``status.history`` item. Argo records no images in history, so `images` is
    empty unless the entry carries an ``images`` list."""
    deployed_at = entry.get("deployedAt")
    return GitOpsHistoryEntry(
        id=int(entry.get("id", 0)),
        revision=str(entry.get("revision", "")),
        deployed_at=datetime.fromisoformat(deployed_at) if deployed_at else None,
        images=tuple(str(i) for i in entry.get("images") or ()),
    )


def _automated(value: Any) -> dict[str, bool] | None:
    """The exact ``automated`` block (Argo's fields; its Go types keep no others)."""
    if not isinstance(value, dict):
        return None
    return {k: value[k] for k in AUTOMATED_FIELDS if isinstance(value.get(k), bool)}


def _application_set(metadata: dict[str, Any]) -> str | None:
    """The owning ApplicationSet: the ownerReference of kind ApplicationSet (what its
    controller sets), else the ``argocd.argoproj.io/application-set-name`` label (set by
    older releases' controller and by many templates)."""
    for owner in metadata.get("ownerReferences") or ():
        if isinstance(owner, dict) and owner.get("kind") == "ApplicationSet" and owner.get("name"):
            return str(owner["name"])
    label = _object(metadata.get("labels")).get(APPSET_LABEL)
    return str(label) if label else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _shown(automated: dict[str, bool] | None) -> str:
    return json.dumps(automated, sort_keys=True) if automated is not None else "no automated sync"
