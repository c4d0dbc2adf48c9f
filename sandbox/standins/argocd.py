"""An Argo CD API server stand-in over HTTP: Applications, sync, rollback, auto-sync on/off.

The bot's Argo CD adapter (plain REST over aiohttp) talks to it unchanged. It serves the
four calls a deploy and a rollback need, records every request, and refuses what Argo CD
refuses, with Argo's status codes and bodies:

- Errors are gRPC statuses turned into HTTP by grpc-gateway v1: the body is ``{"error":
  msg, "code": <gRPC code>, "message": msg}`` and the HTTP status follows the code
  (InvalidArgument 3 and FailedPrecondition 9 are 400, NotFound 5 is 404, PermissionDenied
  7 is 403, Unauthenticated 16 is 401, Internal 13 and Unknown 2 are 500).
- No token is 401 ``no session information``; a token it does not know is 401 ``invalid
  session: token signature is invalid``. The token comes as ``Authorization: Bearer`` or
  the ``argocd.token`` cookie.
- An Application that does not exist is 403 ``permission denied`` unless the request names
  a ``project`` (query parameter, or body field of a POST/PATCH): then it is 404
  ``applications.argoproj.io "<name>" not found``, also when the app is in another
  project. Argo does this so nobody can probe which Applications exist.
- ``GET /api/v1/applications/{name}`` is the Application as Argo serializes it. While an
  operation runs, the top-level ``operation`` is set and ``status.operationState.phase``
  is ``Running``.
- ``POST .../{name}/sync`` ``{revision, prune, dryRun}`` starts a sync. With automated sync
  on, a revision other than ``spec.source.targetRevision`` is 400 code 9 ``Cannot sync to
  <rev>: auto-sync currently set to <target>``. A revision it cannot resolve is 400 code 9
  ``Unable to resolve '<rev>' to a commit SHA``. A second operation while one runs is 400
  code 9 ``another operation is already in progress``.
- ``POST .../{name}/rollback`` ``{id, prune, dryRun}``: with automated sync on, 400 code 9
  ``rollback cannot be initiated when auto-sync is enabled``; an id not in
  ``status.history`` is 400 code 3 ``application <name> does not have deployment with id
  <id>``. Otherwise it syncs to that entry's revision.
- ``PATCH /api/v1/applications/{name}`` ``{"patch": "<json>", "patchType": "merge"}``
  applies a JSON merge patch (RFC 7386) to the Application and keeps its new spec; that is
  how ``spec.syncPolicy.automated`` is set or removed. Automated sync counts as on when
  ``automated`` is present and its ``enabled`` (Argo CD 3) is not false.
- An operation runs for ``sync_seconds``: phase Running and health Progressing, then
  Succeeded, Healthy and Synced with a new ``status.history`` entry (id = last id + 1, at
  most ``revisionHistoryLimit``, default 10, kept). A rollback appends its target's
  revision as a new entry, as Argo does. A dry run changes nothing.

Sources (the API server's code is Argo's own documentation of its errors):

- REST API and swagger: https://argo-cd.readthedocs.io/en/stable/developer-guide/api-docs/
  (``server/application/application.proto`` and ``application.swagger.json``)
- Sync, Rollback, Patch and the RBAC-obscured not-found:
  https://github.com/argoproj/argo-cd/blob/master/server/application/application.go
- ``another operation is already in progress``: ``util/argo/argo.go`` (SetAppOperation)
- ``Unable to resolve ... to a commit SHA``: ``util/git/client.go``
- ``no session information``: ``server/server.go`` (ErrNoSession)
- history kept after a successful operation only, ids counting up, revisionHistoryLimit:
  ``controller/appcontroller.go`` and https://argo-cd.readthedocs.io/en/stable/user-guide/auto_sync/
  (also ``automated.enabled``)
- operation messages ``successfully synced (all tasks run)`` and ``one or more
  synchronization tasks completed unsuccessfully``: gitops-engine ``pkg/sync/sync_context.go``
- error body and code-to-status mapping: grpc-gateway v1 ``runtime/errors.go``
- Assumed: the detail after ``invalid session:`` (Argo passes the JWT library's words on);
  the message of an injected ``fail_next`` error.

Simplifications: no git, so a revision deploys whatever ``set_revision_images`` (or an
earlier history entry) says and the stand-in never compares with ``targetRevision``;
turning automated sync on does not start a sync by itself. No resource tree, no
ApplicationSets, no namespaced apps (``appNamespace``), no RBAC beyond the one token.
Only ``merge`` patches (any other ``patchType`` is 400 code 3). ``fail_revision`` makes a
sync end the way a failing PostSync smoke test does: phase Failed, health Degraded, no
history entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote

from aiohttp import web

from sandbox.standins._server import LoopbackServer

NAMESPACE = "argocd"
"""The namespace Argo CD's Applications live in."""

DEFAULT_HISTORY_LIMIT = 10
SUCCEEDED_MESSAGE = "successfully synced (all tasks run)"
RUNNING_MESSAGE = "one or more tasks are running"
FAILED_MESSAGE = "one or more synchronization tasks completed unsuccessfully"

_HTTP_STATUS = {2: 500, 3: 400, 5: 404, 7: 403, 9: 400, 13: 500, 14: 503, 16: 401}
"""gRPC code -> HTTP status, as grpc-gateway maps them."""

_INJECTED = {500: (13, "internal error"), 503: (14, "service unavailable")}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ArgoError(Exception):
    """A gRPC status Argo CD answers instead of success."""

    def __init__(self, code: int, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or _HTTP_STATUS[code]

    def response(self) -> web.Response:
        body = {"error": self.message, "code": self.code, "message": self.message}
        return web.json_response(body, status=self.http_status)


def _failed_precondition(message: str) -> ArgoError:
    return ArgoError(9, message)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def auto_sync_on(spec: dict[str, Any]) -> bool:
    """Argo's rule: ``automated`` present, and its ``enabled`` not false."""
    automated = (spec.get("syncPolicy") or {}).get("automated")
    return isinstance(automated, dict) and automated.get("enabled") is not False


@dataclass(frozen=True)
class RecordedRequest:
    """One request, the status it got, and its JSON body (None when it had none)."""

    method: str
    path: str
    status: int
    body: dict[str, Any] | None = None


@dataclass
class _HistoryEntry:
    id: int
    revision: str
    images: list[str]
    deployed_at: str
    started_at: str
    source: dict[str, Any]


@dataclass
class _Operation:
    revision: str
    images: list[str]
    source: dict[str, Any]
    prune: bool
    dry_run: bool
    phase: str = "Running"
    message: str = RUNNING_MESSAGE
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None


@dataclass
class _App:
    name: str
    spec: dict[str, Any]
    revision: str
    images: list[str]
    history: list[_HistoryEntry]
    created_at: str
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    sync_status: str = "Synced"
    health: str = "Healthy"
    operation: _Operation | None = None
    """The last operation; running while its phase is Running."""
    resource_version: int = 1

    @property
    def project(self) -> str:
        return str(self.spec.get("project") or "default")

    @property
    def running(self) -> bool:
        return self.operation is not None and self.operation.phase == "Running"


@dataclass
class _Failure:
    method: str
    path_prefix: str
    status: int
    times: int


class ArgoCDStandIn(LoopbackServer):
    """Argo CD's Application API over HTTP on loopback; see the module docstring."""

    service: ClassVar[str] = "Argo CD stand-in"

    def __init__(self, *, token: str, sync_seconds: float = 0.2) -> None:
        super().__init__()
        self._token = token
        self.sync_seconds = sync_seconds
        self._apps: dict[str, _App] = {}
        self._revision_images: dict[str, list[str]] = {}
        self._failing_revisions: set[str] = set()
        self._failures: list[_Failure] = []
        self._operations: dict[str, asyncio.Task[None]] = {}
        """The running (or last) operation's task per Application."""
        self.requests: list[RecordedRequest] = []

    # lifecycle

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    async def before_stop(self) -> None:
        for task in self._operations.values():
            task.cancel()
        for task in self._operations.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._operations.clear()

    @property
    def url(self) -> str:
        """What the bot uses as ARGOCD_URL."""
        return self.base_url

    # what tests and the sandbox set up and read

    def add_application(
        self,
        name: str,
        *,
        project: str = "default",
        repo_url: str,
        path: str,
        revision: str,
        images: Sequence[str],
        auto_sync: bool,
        history: Iterable[tuple[str, Sequence[str]]] = (),
        target_revision: str = "HEAD",
    ) -> None:
        """An Application, Synced and Healthy at ``revision`` running ``images``.

        ``history`` lists earlier deployments as (revision, images), oldest first; ids count
        from 0 and the current deployment is the last entry (added if ``history`` does not
        end with it). Every revision named here is one a later sync can resolve.
        """
        if name in self._apps:
            raise ValueError(f"application {name!r} already exists")
        source = {"repoURL": repo_url, "path": path, "targetRevision": target_revision}
        sync_policy: dict[str, Any] = {}
        if auto_sync:
            sync_policy["automated"] = {"prune": False, "selfHeal": False}
        spec = {
            "project": project,
            "source": source,
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
            "syncPolicy": sync_policy,
        }
        deployments = [(rev, list(imgs)) for rev, imgs in history]
        if not deployments or deployments[-1] != (revision, list(images)):
            deployments.append((revision, list(images)))
        now = _now()
        entries = [
            _HistoryEntry(
                id=i,
                revision=rev,
                images=imgs,
                deployed_at=now,
                started_at=now,
                source=dict(source),
            )
            for i, (rev, imgs) in enumerate(deployments)
        ]
        for rev, imgs in deployments:
            self._revision_images.setdefault(rev, imgs)
        self._apps[name] = _App(
            name=name,
            spec=spec,
            revision=revision,
            images=list(images),
            history=entries,
            created_at=now,
        )

    def application(self, name: str) -> dict[str, Any]:
        """The Application as ``GET /api/v1/applications/{name}`` shows it; KeyError if none."""
        return self._app_json(self._apps[name])

    def set_revision_images(self, revision: str, images: Sequence[str]) -> None:
        """Say which images a git revision deploys, so a sync to it can resolve it."""
        self._revision_images[revision] = list(images)

    def fail_revision(self, revision: str) -> None:
        """Make every sync to ``revision`` end Failed and Degraded (it must still resolve)."""
        self._failing_revisions.add(revision)

    def fail_next(self, method: str, path_prefix: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` (after auth).

        ``method`` may be ``"*"``; ``path_prefix`` is matched against the decoded path, with
        or without ``/api/v1``. The body is Argo's error shape (500: code 13, 503: code 14).
        """
        self._failures.append(_Failure(method.upper(), path_prefix, status, times))

    async def wait_idle(self, name: str, within: float = 5.0) -> dict[str, Any]:
        """Wait until no operation runs on ``name``; its Application JSON then."""
        task = self._operations.get(name)
        if task is not None:
            async with asyncio.timeout(within):
                await asyncio.shield(task)
        return self.application(name)

    # HTTP plumbing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] | None = None
        try:
            self._authenticate(request)
            body = await self._json_body(request)
            response = await self._answer(request, body or {})
        except ArgoError as error:
            response = error.response()
        self.requests.append(RecordedRequest(request.method, request.path, response.status, body))
        return response

    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any] | None:
        if not request.can_read_body:
            return None
        try:
            body = await request.json()
        except json.JSONDecodeError as error:
            raise ArgoError(3, f"invalid JSON body: {error.msg}") from error
        if not isinstance(body, dict):
            raise ArgoError(3, "the request body must be a JSON object")
        return body

    async def _answer(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        path = unquote(request.path)
        self._maybe_fail(request.method, path)
        parts = path.removeprefix("/api/v1/applications/").split("/")
        if not path.startswith("/api/v1/applications/") or not parts[0] or len(parts) > 2:
            raise ArgoError(5, "Not Found")
        name, action = parts[0], (parts[1] if len(parts) == 2 else "")
        project = str(body.get("project") or request.query.get("project") or "")
        routes = {
            ("GET", ""): self._get,
            ("PATCH", ""): self._patch,
            ("POST", "sync"): self._sync,
            ("POST", "rollback"): self._rollback,
        }
        handler = routes.get((request.method, action))
        if handler is None:
            raise ArgoError(5, "Not Found")
        app = self._find(name, project)
        return await handler(app, body)

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        token = header[len("bearer ") :].strip() if header.lower().startswith("bearer ") else ""
        token = token or request.cookies.get("argocd.token", "")
        if not token:
            raise ArgoError(16, "no session information")
        if token != self._token:
            raise ArgoError(16, "invalid session: token signature is invalid")

    def _maybe_fail(self, method: str, path: str) -> None:
        short = path.removeprefix("/api/v1")
        for failure in self._failures:
            if failure.method not in ("*", method):
                continue
            if not (path.startswith(failure.path_prefix) or short.startswith(failure.path_prefix)):
                continue
            failure.times -= 1
            if failure.times <= 0:
                self._failures.remove(failure)
            code, message = _INJECTED.get(failure.status, (2, "unknown error"))
            raise ArgoError(code, message, http_status=failure.status)

    def _find(self, name: str, project: str) -> _App:
        app = self._apps.get(name)
        if project and (app is None or app.project != project):
            raise ArgoError(5, f'applications.argoproj.io "{name}" not found')
        if app is None:
            raise ArgoError(7, "permission denied")
        return app

    # handlers

    async def _get(self, app: _App, body: dict[str, Any]) -> web.Response:
        return web.json_response(self._app_json(app))

    async def _patch(self, app: _App, body: dict[str, Any]) -> web.Response:
        patch_type = str(body.get("patchType") or "json")
        if patch_type != "merge":
            raise ArgoError(3, f"Patch type '{patch_type}' is not supported")
        try:
            patch = json.loads(str(body.get("patch", "")))
        except json.JSONDecodeError as error:
            raise ArgoError(2, "Invalid JSON Patch") from error
        patched = _merge_patch(self._app_json(app), patch)
        spec = patched.get("spec") if isinstance(patched, dict) else None
        if not isinstance(spec, dict):
            raise ArgoError(3, "application spec is invalid: spec is required")
        automated = (spec.get("syncPolicy") or {}).get("automated")
        if automated is not None and not isinstance(automated, dict):
            raise ArgoError(
                3, "application spec is invalid: syncPolicy.automated must be an object"
            )
        app.spec = spec
        app.resource_version += 1
        return web.json_response(self._app_json(app))

    async def _sync(self, app: _App, body: dict[str, Any]) -> web.Response:
        requested = str(body.get("revision") or "")
        target = str(app.spec["source"].get("targetRevision") or "HEAD")
        dry_run = bool(body.get("dryRun", False))
        if auto_sync_on(app.spec) and not dry_run and requested and requested != target:
            raise _failed_precondition(
                f"Cannot sync to {requested}: auto-sync currently set to "
                f"{app.spec['source'].get('targetRevision', '')}"
            )
        revision = requested or target
        images = self._revision_images.get(revision)
        if images is None:
            raise _failed_precondition(f"Unable to resolve '{revision}' to a commit SHA")
        operation = _Operation(
            revision=revision,
            images=images,
            source=dict(app.spec["source"]),
            prune=bool(body.get("prune")),
            dry_run=dry_run,
        )
        return self._start(app, operation)

    async def _rollback(self, app: _App, body: dict[str, Any]) -> web.Response:
        if auto_sync_on(app.spec):
            raise _failed_precondition("rollback cannot be initiated when auto-sync is enabled")
        try:
            wanted = int(body.get("id", 0))
        except (TypeError, ValueError) as error:
            raise ArgoError(3, f"invalid value for int64 field id: {body.get('id')!r}") from error
        entry = next((h for h in app.history if h.id == wanted), None)
        if entry is None:
            raise ArgoError(3, f"application {app.name} does not have deployment with id {wanted}")
        operation = _Operation(
            revision=entry.revision,
            images=entry.images,
            source=dict(entry.source),
            prune=bool(body.get("prune")),
            dry_run=bool(body.get("dryRun", False)),
        )
        return self._start(app, operation)

    # operations

    def _start(self, app: _App, operation: _Operation) -> web.Response:
        if app.running:
            raise _failed_precondition("another operation is already in progress")
        app.operation = operation
        if not operation.dry_run:
            app.health = "Progressing"
        app.resource_version += 1
        self._operations[app.name] = asyncio.get_running_loop().create_task(
            self._run(app, operation)
        )
        return web.json_response(self._app_json(app))

    async def _run(self, app: _App, operation: _Operation) -> None:
        await asyncio.sleep(self.sync_seconds)
        operation.finished_at = _now()
        app.resource_version += 1
        if operation.dry_run:
            operation.phase, operation.message = "Succeeded", SUCCEEDED_MESSAGE
            return
        app.images = list(operation.images)
        if operation.revision in self._failing_revisions:
            operation.phase, operation.message = "Failed", FAILED_MESSAGE
            app.health, app.sync_status = "Degraded", "OutOfSync"
            return
        operation.phase, operation.message = "Succeeded", SUCCEEDED_MESSAGE
        app.health, app.sync_status, app.revision = "Healthy", "Synced", operation.revision
        next_id = app.history[-1].id + 1 if app.history else 0
        app.history.append(
            _HistoryEntry(
                id=next_id,
                revision=operation.revision,
                images=list(operation.images),
                deployed_at=operation.finished_at,
                started_at=operation.started_at,
                source=operation.source,
            )
        )
        limit = int(app.spec.get("revisionHistoryLimit") or DEFAULT_HISTORY_LIMIT)
        del app.history[:-limit]

    # JSON shapes

    def _app_json(self, app: _App) -> dict[str, Any]:
        status: dict[str, Any] = {
            "sync": {
                "status": app.sync_status,
                "revision": app.revision,
                "comparedTo": {
                    "source": copy.deepcopy(app.spec.get("source")),
                    "destination": copy.deepcopy(app.spec.get("destination")),
                },
            },
            "health": {"status": app.health},
            "history": [
                {
                    "id": h.id,
                    "revision": h.revision,
                    "deployedAt": h.deployed_at,
                    "deployStartedAt": h.started_at,
                    "source": copy.deepcopy(h.source),
                }
                for h in app.history
            ],
            "summary": {"images": list(app.images)},
            "sourceType": "Directory",
            "reconciledAt": _now(),
        }
        result: dict[str, Any] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {
                "name": app.name,
                "namespace": NAMESPACE,
                "uid": app.uid,
                "resourceVersion": str(app.resource_version),
                "creationTimestamp": app.created_at,
            },
            "spec": copy.deepcopy(app.spec),
            "status": status,
        }
        op = app.operation
        if op is None:
            return result
        sync_op = {"revision": op.revision, "prune": op.prune, "dryRun": op.dry_run}
        state: dict[str, Any] = {
            "operation": {"sync": sync_op, "initiatedBy": {"username": "admin"}},
            "phase": op.phase,
            "message": op.message,
            "startedAt": op.started_at,
        }
        if op.finished_at is not None:
            state["finishedAt"] = op.finished_at
            state["syncResult"] = {"revision": op.revision, "source": copy.deepcopy(op.source)}
        status["operationState"] = state
        if app.running:
            result["operation"] = copy.deepcopy(state["operation"])
        return result
