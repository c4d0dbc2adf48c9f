"""An Argo CD API server stand-in over HTTP: Applications, sync, rollback, auto-sync on/off.

The bot's Argo CD adapter (plain REST over aiohttp) talks to it unchanged. It serves the
calls a deploy and a rollback need, records every request, and refuses what Argo CD
refuses, with Argo's status codes and bodies. Each behaviour names the upstream file it
follows (github.com/argoproj/argo-cd unless said otherwise; read at v3.6 development
HEAD); tests/standins/test_argocd_standin.py pins each one.

Errors and auth

- Errors are gRPC statuses turned into HTTP by grpc-gateway v1 (``runtime/errors.go``):
  the body is ``{"error": msg, "code": <gRPC code>, "message": msg}`` and the HTTP status
  follows the code (InvalidArgument 3 and FailedPrecondition 9 are 400, NotFound 5 is 404,
  PermissionDenied 7 is 403, Unauthenticated 16 is 401, Internal 13 and Unknown 2 are 500).
- No token is 401 ``no session information`` (``server/server.go``, ErrNoSession); a token
  it does not know is 401 ``invalid session: token signature is invalid`` (assumed: Argo
  passes the JWT library's words on). The token comes as ``Authorization: Bearer`` or the
  ``argocd.token`` cookie.
- An Application that does not exist is 403 ``permission denied`` unless the request names
  a ``project`` (query parameter, or body field of a POST/PATCH): then it is 404
  ``applications.argoproj.io "<name>" not found``, also when the app is in another
  project (``server/application/application.go``, getAppEnforceRBAC), so nobody can probe
  which Applications exist.

What runs, and what git says (``controller/state.go`` CompareAppState,
``controller/appcontroller.go`` refreshAppConditions/CompareAppState call,
``pkg/apis/application/v1alpha1/types.go`` SyncStatus, OperationState,
SyncOperationResult, RevisionHistory)

- Each repository is a small git model (`GitRepo`): branches (lists of full 40-character
  SHAs, newest last), tags, and the images each commit's manifests deploy.
- ``status.sync.revision`` is what the comparison ran against: ``spec.source.targetRevision``
  (empty means ``HEAD``) resolved to a full SHA. It follows git, not the operations: after
  a rollback to an older history id it stays at HEAD and ``status.sync.status`` is
  ``OutOfSync``. Synced means the running images equal what that commit deploys (the
  stand-in's manifests are its images). A push is compared at once (as with Argo's git
  webhook configured; without one Argo polls every 3 minutes).
- What is deployed is ``status.operationState.syncResult.revision`` of the last successful
  sync and the newest ``status.history[]`` entry (full SHAs, ids counting up, at most
  ``revisionHistoryLimit``, default 10, kept; ``controller/state.go`` persistRevisionHistory).
  History is written only by a successful, non-dry-run, non-partial sync
  (``controller/sync.go`` SyncAppState). Each entry carries ``source`` (the source at the
  time, used by a rollback) and ``initiatedBy``.

Operations are asynchronous (``server/application/application.go`` Sync and Rollback set
``operation`` through ``util/argo/argo.go`` SetAppOperation and return; the controller's
processRequestedAppOperation and setOperationState carry it out)

- The API answers at once with ``operation`` set; ``status.operationState`` still shows the
  previous operation until the controller picks the new one up (``pickup_seconds``).
  Then ``operationState.phase`` is ``Running``, ``syncResult.revision`` is the resolved
  full SHA (``controller/sync.go``: "we are now guaranteed to have a concrete commit
  SHA") and health is ``Progressing``. After ``sync_seconds`` the phase is ``Succeeded``
  (message ``successfully synced (all tasks run)``, gitops-engine ``pkg/sync/sync_context.go``)
  and ``operation`` is cleared; health turns ``Healthy`` ``health_seconds`` later (a sync
  finishes when its resources are applied, not when they are ready).
- ``fail_revision`` makes a sync end the way a failing PostSync smoke test does: phase
  ``Failed``, message ``one or more synchronization tasks completed unsuccessfully``,
  health ``Degraded``, no history entry (the new images are partly applied).
- A second operation while one is requested or running is 400 code 9 ``error setting app
  operation: rpc error: code = FailedPrecondition desc = another operation is already in
  progress`` (``util/argo/argo.go`` ErrAnotherOperationInProgress, wrapped by Sync and
  Rollback; grpc-go's status.FromError keeps the wrapped error's whole text).

Sync and rollback (``server/application/application.go`` Sync, resolveSourceRevisions,
resolveRevision, Rollback; ``util/git/client.go`` lsRemote; ``util/git/git.go``)

- ``POST .../{name}/sync`` ``{revision, prune, dryRun}``. With automated sync on, a
  revision other than ``targetRevision`` (or ``HEAD`` when it is empty) is 400 code 9
  ``Cannot sync to <rev>: auto-sync currently set to <targetRevision>``.
- The revision is resolved as ``ls-remote`` does: a full SHA is taken as is; ``HEAD``, a
  branch or a tag (short name or ``refs/...``) becomes its full SHA; any other string of 7
  or more hex digits is "assumed to be commit sha" and kept as typed (the controller
  resolves it when it checks the commit out, and a commit git does not have ends the
  operation in phase ``Error``: ``ComparisonError: ... Failed to checkout revision ...``,
  ``reposerver/repository/repository.go`` checkoutRevision; the message's tail is
  assumed). Anything else is 400 code 9 ``error resolving repo revision: rpc error: code =
  Unknown desc = unable to resolve '<rev>' to a commit SHA: revision not found``.
  ``operation.sync.revision`` is the resolved revision.
- ``POST .../{name}/rollback`` ``{id, prune, dryRun}``: with automated sync on, 400 code 9
  ``rollback cannot be initiated when auto-sync is enabled``; an id not in
  ``status.history`` is 400 code 3 ``application <name> does not have deployment with id
  <id>``. Otherwise it syncs to that entry's revision with that entry's source.
- A dry run resolves and succeeds and changes nothing (no history).

Automated sync (``pkg/apis/application/v1alpha1/types.go`` SyncPolicyAutomated and
IsAutomatedSyncEnabled; ``controller/appcontroller.go`` autoSync and alreadyAttemptedSync;
``docs/user-guide/auto_sync.md``)

- ``PATCH /api/v1/applications/{name}`` ``{"patch": "<json>", "patchType": "merge"}``
  applies a JSON merge patch (RFC 7386) to the Application, then reads it back into Argo's
  Go types (``server/application/application.go`` Patch): fields those types do not have
  are dropped. ``automated`` has exactly ``prune``, ``selfHeal``, ``allowEmpty`` and
  ``enabled`` (booleans; ``enabled`` since v3.1.0, argo-cd #21999 and #22440). With
  ``supports_automated_enabled=False`` (Argo CD before 3.1) ``enabled`` is dropped like any
  unknown field, so ``{"enabled": false}`` leaves automated sync on. A non-boolean is
  500 code 2 (``error unmarshaling patched app: ...``; the detail is Go's, assumed).
- Automated sync is on when ``automated`` is present and its ``enabled`` is not false.
- The controller, soon after any change (a patch, a push, a finished operation): when
  automated sync is on, no operation runs and the app is OutOfSync, it syncs to
  ``status.sync.revision`` (``initiatedBy: {automated: true}``), unless its last operation
  already went to that revision from the same source: then only ``selfHeal`` syncs again,
  and never after a failed attempt. So turning automated sync back on after a rollback
  redeploys git's HEAD.

ApplicationSets (``applicationset/controllers/applicationset_controller.go``)

- An Application generated by an ApplicationSet has a controller ``ownerReference`` (kind
  ``ApplicationSet``, SetControllerReference in createOrUpdateInCluster) and, as older
  releases' controller and many templates set it, the label
  ``argocd.argoproj.io/application-set-name`` (LabelKeyAppSetInstance in 2.x).
- Its controller owns the spec: a patch is accepted, then undone ``appset_seconds`` later
  (an update to an owned Application requeues the ApplicationSet, shouldRequeueForApplication,
  and createOrUpdateInCluster writes the generated spec back).

Simplifications: no resource tree, no namespaced apps (``appNamespace``), no multi-source
apps, no semver constraints in ``targetRevision``, no RBAC beyond the one token, no
selfHeal backoff; only ``merge`` patches (any other ``patchType`` is 400 code 3, though
Argo also takes ``json``); health is Healthy, Progressing or Degraded only. ``fail_next``
answers a request with an injected error (its message is ours).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import uuid
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote

from aiohttp import web

from sandbox.standins._server import LoopbackServer

NAMESPACE = "argocd"
"""The namespace Argo CD's Applications live in."""

APPSET_LABEL = "argocd.argoproj.io/application-set-name"
DEFAULT_HISTORY_LIMIT = 10
SUCCEEDED_MESSAGE = "successfully synced (all tasks run)"
RUNNING_MESSAGE = "one or more tasks are running"
FAILED_MESSAGE = "one or more synchronization tasks completed unsuccessfully"
AUTOMATED_FIELDS = ("prune", "selfHeal", "allowEmpty", "enabled")
"""The fields of Argo's SyncPolicyAutomated (the last one since v3.1.0)."""

_HTTP_STATUS = {2: 500, 3: 400, 5: 404, 7: 403, 9: 400, 13: 500, 14: 503, 16: 401}
"""gRPC code -> HTTP status, as grpc-gateway maps them."""

_INJECTED = {500: (13, "internal error"), 503: (14, "service unavailable")}

_FULL_SHA = re.compile(r"^[0-9A-Fa-f]{40}$")
_TRUNCATED_SHA = re.compile(r"^[0-9A-Fa-f]{7,}$")


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


def auto_sync_on(spec: Mapping[str, Any]) -> bool:
    """Argo's rule: ``automated`` present, and its ``enabled`` not false."""
    automated = (spec.get("syncPolicy") or {}).get("automated")
    return isinstance(automated, dict) and automated.get("enabled") is not False


def _target(spec: Mapping[str, Any]) -> str:
    """``text.FirstNonEmpty(source.TargetRevision, "HEAD")``."""
    return str((spec.get("source") or {}).get("targetRevision") or "HEAD")


class UnknownRevision(Exception):
    """``ls-remote`` found no ref of that name and it does not look like a SHA."""


@dataclass
class GitRepo:
    """A git repository as Argo's repo server sees it: refs, and what each commit deploys."""

    url: str
    default_branch: str = "main"
    branches: dict[str, list[str]] = field(default_factory=dict)
    """Branch -> its commits' full SHAs, oldest first (the last one is the tip)."""
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, list[str]] = field(default_factory=dict)
    """Full SHA -> the images its manifests deploy."""

    def head(self) -> str:
        return self.branches[self.default_branch][-1]

    def ls_remote(self, revision: str) -> str:
        """What ``util/git/client.go`` lsRemote answers for ``revision``."""
        if _FULL_SHA.fullmatch(revision):
            return revision
        revision = revision or "HEAD"
        if revision == "HEAD":
            return self.head()
        for name, commits in self.branches.items():
            if revision in (name, f"refs/heads/{name}"):
                return commits[-1]
        for name, sha in self.tags.items():
            if revision in (name, f"refs/tags/{name}"):
                return sha
        if _TRUNCATED_SHA.fullmatch(revision):
            return revision  # "assumed to be commit sha"
        raise UnknownRevision(f"unable to resolve '{revision}' to a commit SHA: revision not found")

    def commit(self, revision: str) -> str | None:
        """The full SHA a checkout of ``revision`` lands on, or None if git has no such
        commit (a full SHA, or an abbreviation that names exactly one commit)."""
        try:
            resolved = self.ls_remote(revision).lower()
        except UnknownRevision:
            return None
        found = [sha for sha in self.commits if sha.startswith(resolved)]
        return found[0] if len(found) == 1 else None


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
    deployed_at: str
    started_at: str
    source: dict[str, Any]
    initiated_by: dict[str, Any]


@dataclass
class _Operation:
    revision: str
    """``operation.sync.revision``: what the API resolved (a full SHA, or the typed
    abbreviation of one)."""
    source: dict[str, Any]
    prune: bool
    dry_run: bool
    initiated_by: dict[str, Any]
    phase: str = ""
    """Empty until the controller picks the operation up."""
    message: str = RUNNING_MESSAGE
    started_at: str = ""
    finished_at: str | None = None
    result: str | None = None
    """``syncResult.revision``: the full SHA, once resolved."""


@dataclass
class _App:
    name: str
    spec: dict[str, Any]
    repo: GitRepo
    deployed: str
    """The full SHA of the last successful sync ("" before any)."""
    images: list[str]
    history: list[_HistoryEntry]
    created_at: str
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    health: str = "Healthy"
    operation: _Operation | None = None
    """The requested or running operation (top-level ``operation``); None when idle."""
    last: _Operation | None = None
    """The operation ``status.operationState`` shows: the last one picked up."""
    application_set: str | None = None
    template: dict[str, Any] | None = None
    """The spec its ApplicationSet generates (what the ApplicationSet controller restores)."""
    resource_version: int = 1

    @property
    def project(self) -> str:
        return str(self.spec.get("project") or "default")


@dataclass
class _Failure:
    method: str
    path_prefix: str
    status: int
    times: int


class ArgoCDStandIn(LoopbackServer):
    """Argo CD's Application API over HTTP on loopback; see the module docstring."""

    service: ClassVar[str] = "Argo CD stand-in"

    def __init__(
        self,
        *,
        token: str,
        sync_seconds: float = 0.2,
        supports_automated_enabled: bool = True,
    ) -> None:
        super().__init__()
        self._token = token
        self.sync_seconds = sync_seconds
        self.pickup_seconds = 0.02
        """How long the controller takes to pick up a requested operation or a change."""
        self.health_seconds = 0.05
        """How long after a successful sync health stays Progressing."""
        self.appset_seconds = 0.05
        """How long the ApplicationSet controller takes to undo a patch of its app."""
        self.supports_automated_enabled = supports_automated_enabled
        self.repos: dict[str, GitRepo] = {}
        self._apps: dict[str, _App] = {}
        self._failing_revisions: set[str] = set()
        self._failures: list[_Failure] = []
        self._tasks: dict[str, set[asyncio.Task[None]]] = {}
        """Background work (operations, the controllers) per Application."""
        self.requests: list[RecordedRequest] = []
        self.operations: list[tuple[str, str, bool]] = []
        """Every operation started: (application, revision asked for, automated)."""

    # lifecycle

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    async def before_stop(self) -> None:
        tasks = [task for group in self._tasks.values() for task in group]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    @property
    def url(self) -> str:
        """What the bot uses as ARGOCD_URL."""
        return self.base_url

    # what tests and the sandbox set up and read

    def add_commit(
        self,
        repo_url: str,
        sha: str,
        images: Sequence[str],
        *,
        branch: str = "main",
        tags: Iterable[str] = (),
    ) -> None:
        """Push a commit (a full SHA) deploying ``images`` to ``branch``, with ``tags``.

        The first branch of a repository is its default branch (HEAD). Applications on
        that repository are compared again at once, and auto-sync may follow.
        """
        if not _FULL_SHA.fullmatch(sha):
            raise ValueError(f"{sha!r} is not a full 40-character commit SHA")
        repo = self.repos.get(repo_url)
        if repo is None:
            repo = self.repos[repo_url] = GitRepo(repo_url, default_branch=branch)
        sha = sha.lower()
        repo.commits[sha] = list(images)
        commits = repo.branches.setdefault(branch, [])
        if sha not in commits:
            commits.append(sha)
        for tag in tags:
            repo.tags[tag] = sha
        for app in self._apps.values():
            if app.repo is repo:
                app.resource_version += 1
                self._reconcile_soon(app)

    def add_application(
        self,
        name: str,
        *,
        project: str = "default",
        repo_url: str,
        path: str,
        revision: str,
        images: Sequence[str],
        auto_sync: bool = False,
        automated: Mapping[str, bool] | None = None,
        history: Iterable[tuple[str, Sequence[str]]] = (),
        target_revision: str = "HEAD",
        application_set: str | None = None,
    ) -> None:
        """An Application running ``revision`` (a full SHA) with ``images``, Healthy.

        ``history`` lists earlier deployments as (full SHA, images), oldest first; ids
        count from 0 and the current deployment is the last entry (added if ``history``
        does not end with it). Commits git does not have yet are pushed to the default
        branch in that order, so unless the repository was set up before, HEAD is the
        running revision. ``automated`` is the exact ``spec.syncPolicy.automated`` block
        (``auto_sync=True`` alone means ``{"prune": false, "selfHeal": false}``).
        ``application_set`` makes it generated by that ApplicationSet.
        """
        if name in self._apps:
            raise ValueError(f"application {name!r} already exists")
        deployments = [(rev.lower(), list(imgs)) for rev, imgs in history]
        if not deployments or deployments[-1] != (revision.lower(), list(images)):
            deployments.append((revision.lower(), list(images)))
        for rev, imgs in deployments:
            repo = self.repos.get(repo_url)
            if repo is None or rev not in repo.commits:
                self.add_commit(repo_url, rev, imgs)
        source = {"repoURL": repo_url, "path": path, "targetRevision": target_revision}
        sync_policy: dict[str, Any] = {}
        if automated is not None:
            sync_policy["automated"] = dict(automated)
        elif auto_sync:
            sync_policy["automated"] = {"prune": False, "selfHeal": False}
        spec = {
            "project": project,
            "source": source,
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
            "syncPolicy": sync_policy,
        }
        now = _now()
        entries = [
            _HistoryEntry(
                id=i,
                revision=rev,
                deployed_at=now,
                started_at=now,
                source=dict(source),
                initiated_by={"username": "admin"},
            )
            for i, (rev, _) in enumerate(deployments)
        ]
        app = _App(
            name=name,
            spec=spec,
            repo=self.repos[repo_url],
            deployed=deployments[-1][0],
            images=list(images),
            history=entries,
            created_at=now,
            application_set=application_set,
            template=copy.deepcopy(spec) if application_set else None,
        )
        self._apps[name] = app
        self._reconcile_soon(app)

    def adopt(self, name: str, *, application_set: str) -> None:
        """An ApplicationSet starts generating ``name``: its controller adopts the existing
        Application (SetControllerReference), and its spec as it is now is the template."""
        app = self._apps[name]
        app.application_set, app.template = application_set, copy.deepcopy(app.spec)
        app.resource_version += 1

    def application(self, name: str) -> dict[str, Any]:
        """The Application as ``GET /api/v1/applications/{name}`` shows it; KeyError if none."""
        return self._app_json(self._apps[name])

    def fail_revision(self, revision: str) -> None:
        """Make every sync to ``revision`` (a full SHA) end Failed and Degraded."""
        self._failing_revisions.add(revision.lower())

    def fail_next(self, method: str, path_prefix: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` (after auth).

        ``method`` may be ``"*"``; ``path_prefix`` is matched against the decoded path, with
        or without ``/api/v1``. The body is Argo's error shape (500: code 13, 503: code 14).
        """
        self._failures.append(_Failure(method.upper(), path_prefix, status, times))

    async def wait_idle(self, name: str, within: float = 5.0) -> dict[str, Any]:
        """Wait until nothing runs for ``name`` (operations, controllers); its JSON then."""
        async with asyncio.timeout(within):
            while pending := [t for t in self._tasks.get(name, ()) if not t.done()]:
                await asyncio.wait([asyncio.shield(t) for t in pending])
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
            raise ArgoError(2, "error calculating merge patch: Invalid JSON Patch") from error
        patched = _merge_patch(self._app_json(app), patch)
        spec = patched.get("spec") if isinstance(patched, dict) else None
        if not isinstance(spec, dict):
            raise ArgoError(3, "application spec is invalid: spec is required")
        sync_policy = spec.get("syncPolicy")
        if isinstance(sync_policy, dict) and "automated" in sync_policy:
            sync_policy["automated"] = self._automated_as_argo_reads_it(sync_policy["automated"])
        app.spec = spec
        app.resource_version += 1
        if app.application_set:
            self._in_background(app, self._appset_reverts(app))
        self._reconcile_soon(app)
        return web.json_response(self._app_json(app))

    def _automated_as_argo_reads_it(self, automated: Any) -> dict[str, bool] | None:
        """``automated`` after Argo's ``json.Unmarshal`` into SyncPolicyAutomated."""
        if automated is None:
            return None
        if not isinstance(automated, dict):
            raise ArgoError(
                2,
                "error unmarshaling patched app: json: cannot unmarshal "
                f"{type(automated).__name__} into Go struct field "
                "SyncPolicy.spec.syncPolicy.automated of type v1alpha1.SyncPolicyAutomated",
            )
        known = AUTOMATED_FIELDS if self.supports_automated_enabled else AUTOMATED_FIELDS[:3]
        kept: dict[str, bool] = {}
        for key in known:
            if key not in automated or automated[key] is None:
                continue
            if not isinstance(automated[key], bool):
                raise ArgoError(
                    2,
                    "error unmarshaling patched app: json: cannot unmarshal "
                    f"{type(automated[key]).__name__} into Go struct field "
                    f"SyncPolicyAutomated.spec.syncPolicy.automated.{key} of type bool",
                )
            kept[key] = automated[key]
        return kept

    async def _sync(self, app: _App, body: dict[str, Any]) -> web.Response:
        requested = str(body.get("revision") or "")
        target = _target(app.spec)
        dry_run = bool(body.get("dryRun", False))
        if requested and requested != target and auto_sync_on(app.spec) and not dry_run:
            raise _failed_precondition(
                f"Cannot sync to {requested}: auto-sync currently set to "
                f"{app.spec['source'].get('targetRevision', '')}"
            )
        try:
            revision = app.repo.ls_remote(requested or target)
        except UnknownRevision as error:
            raise _failed_precondition(
                f"error resolving repo revision: rpc error: code = Unknown desc = {error}"
            ) from None
        operation = _Operation(
            revision=revision,
            source=copy.deepcopy(app.spec["source"]),
            prune=bool(body.get("prune")),
            dry_run=dry_run,
            initiated_by={"username": "admin"},
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
            source=copy.deepcopy(entry.source),
            prune=bool(body.get("prune")),
            dry_run=bool(body.get("dryRun", False)),
            initiated_by={"username": "admin"},
        )
        return self._start(app, operation)

    # operations and controllers

    def _start(self, app: _App, operation: _Operation) -> web.Response:
        if app.operation is not None:
            raise _failed_precondition(
                "error setting app operation: rpc error: code = FailedPrecondition desc = "
                "another operation is already in progress"
            )
        app.operation = operation
        app.resource_version += 1
        self._in_background(app, self._run(app, operation))
        return web.json_response(self._app_json(app))

    def _in_background(self, app: _App, work: Coroutine[Any, Any, None]) -> None:
        tasks = self._tasks.setdefault(app.name, set())
        task = asyncio.get_running_loop().create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run(self, app: _App, operation: _Operation) -> None:
        automated = bool(operation.initiated_by.get("automated"))
        self.operations.append((app.name, operation.revision, automated))
        await asyncio.sleep(self.pickup_seconds)
        operation.phase, operation.started_at = "Running", _now()
        app.last = operation
        app.resource_version += 1
        full = app.repo.commit(operation.revision)
        if full is None:
            self._finish(
                app,
                operation,
                "Error",
                "ComparisonError: Failed to load target state: failed to generate manifest "
                "for source 1 of 1: rpc error: code = Internal desc = Failed to checkout "
                f"revision {operation.revision}: reference not found",
            )
            return
        operation.result = full
        if not operation.dry_run:
            app.health = "Progressing"
        await asyncio.sleep(self.sync_seconds)
        if operation.dry_run:
            self._finish(app, operation, "Succeeded", SUCCEEDED_MESSAGE)
            return
        app.images = list(app.repo.commits[full])
        if full in self._failing_revisions:
            app.health = "Degraded"
            self._finish(app, operation, "Failed", FAILED_MESSAGE)
            return
        app.deployed = full
        next_id = app.history[-1].id + 1 if app.history else 0
        app.history.append(
            _HistoryEntry(
                id=next_id,
                revision=full,
                deployed_at=_now(),
                started_at=operation.started_at,
                source=copy.deepcopy(operation.source),
                initiated_by=dict(operation.initiated_by),
            )
        )
        limit = int(app.spec.get("revisionHistoryLimit") or DEFAULT_HISTORY_LIMIT)
        del app.history[:-limit]
        self._finish(app, operation, "Succeeded", SUCCEEDED_MESSAGE)
        await asyncio.sleep(self.health_seconds)
        app.health = "Healthy"
        app.resource_version += 1

    def _finish(self, app: _App, operation: _Operation, phase: str, message: str) -> None:
        operation.phase, operation.message, operation.finished_at = phase, message, _now()
        app.operation = None
        app.resource_version += 1
        self._reconcile_soon(app)

    def _reconcile_soon(self, app: _App) -> None:
        """The application controller looks at ``app`` again in a moment."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # set up before any loop runs: nothing can happen yet anyway
            return
        self._in_background(app, self._reconcile(app))

    async def _reconcile(self, app: _App) -> None:
        await asyncio.sleep(self.pickup_seconds)
        if not auto_sync_on(app.spec) or app.operation is not None:
            return
        revision, status = self._compare(app)
        if status != "OutOfSync":
            return
        automated = app.spec["syncPolicy"]["automated"]
        last = app.last
        attempted = last is not None and (last.result, last.source) == (
            revision,
            app.spec["source"],
        )
        retry = last is not None and last.phase == "Succeeded" and automated.get("selfHeal")
        if attempted and not retry:
            return
        operation = _Operation(
            revision=revision,
            source=copy.deepcopy(app.spec["source"]),
            prune=bool(automated.get("prune")),
            dry_run=False,
            initiated_by={"automated": True},
        )
        app.operation = operation
        app.resource_version += 1
        await self._run(app, operation)

    async def _appset_reverts(self, app: _App) -> None:
        await asyncio.sleep(self.appset_seconds)
        if app.template is not None and app.spec != app.template:
            app.spec = copy.deepcopy(app.template)
            app.resource_version += 1
            self._reconcile_soon(app)

    def _compare(self, app: _App) -> tuple[str, str]:
        """(``status.sync.revision``, ``status.sync.status``) as the comparison finds them."""
        revision = app.repo.commit(_target(app.spec))
        if revision is None:
            return "", "Unknown"
        synced = app.images == app.repo.commits[revision]
        return revision, "Synced" if synced else "OutOfSync"

    # JSON shapes

    def _app_json(self, app: _App) -> dict[str, Any]:
        revision, sync_status = self._compare(app)
        status: dict[str, Any] = {
            "sync": {
                "status": sync_status,
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
                    "initiatedBy": dict(h.initiated_by),
                }
                for h in app.history
            ],
            "summary": {"images": list(app.images)},
            "sourceType": "Directory",
            "reconciledAt": _now(),
        }
        if revision:
            status["sync"]["revision"] = revision
        metadata: dict[str, Any] = {
            "name": app.name,
            "namespace": NAMESPACE,
            "uid": app.uid,
            "resourceVersion": str(app.resource_version),
            "creationTimestamp": app.created_at,
        }
        if app.application_set:
            metadata["labels"] = {APPSET_LABEL: app.application_set}
            metadata["ownerReferences"] = [
                {
                    "apiVersion": "argoproj.io/v1alpha1",
                    "kind": "ApplicationSet",
                    "name": app.application_set,
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, app.application_set)),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        result: dict[str, Any] = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": metadata,
            "spec": copy.deepcopy(app.spec),
            "status": status,
        }
        if app.operation is not None:
            result["operation"] = _operation_json(app.operation)
        last = app.last
        if last is not None:
            state: dict[str, Any] = {
                "operation": _operation_json(last),
                "phase": last.phase,
                "message": last.message,
                "startedAt": last.started_at,
            }
            if last.result is not None:
                state["syncResult"] = {
                    "revision": last.result,
                    "source": copy.deepcopy(last.source),
                }
            if last.finished_at is not None:
                state["finishedAt"] = last.finished_at
            status["operationState"] = state
        return result


def _operation_json(operation: _Operation) -> dict[str, Any]:
    return {
        "sync": {
            "revision": operation.revision,
            "prune": operation.prune,
            "dryRun": operation.dry_run,
            "source": copy.deepcopy(operation.source),
        },
        "initiatedBy": dict(operation.initiated_by),
        "retry": {},
    }
