"""A GitLab REST API v4 stand-in over HTTP, for the endpoints a golden-path provisioner uses.

python-gitlab (``gitlab.Gitlab(standin.url, private_token=...)``) and plain REST clients
talk to it unchanged. It keeps groups, projects, a tiny git history per project (commits
with full file snapshots, branches), CI/CD variables, protected branches and pipelines,
records every request, and refuses what GitLab refuses, the way GitLab refuses it:

- No token, or a token it does not know, is 401 ``{"message": "401 Unauthorized"}``. The
  token comes as ``PRIVATE-TOKEN``, ``Authorization: Bearer`` or ``private_token=``.
- ``:id`` of a project or group is numeric or the URL-encoded full path
  (``platform%2Fcheckout``); an unknown one is 404 ``{"message": "404 Project Not
  Found"}`` (``Group``, ``File``, ``Commit``, ``Variable``, ``Branch``). An unknown route is
  404 ``{"error": "404 Not Found"}``; a missing required parameter is 400
  ``{"error": "<name> is missing"}`` (grape's wording).
- Creating a project whose name or path is taken in its namespace is 400
  ``{"message": {"name": ["has already been taken"], "path": [...]}}``.
  ``default_branch`` is honoured only with ``initialize_with_readme`` (as documented);
  otherwise the branch is ``main``, made by the first commit.
- Deleting a project is delayed, as on every GitLab since 18.0 (Premium and GitLab.com
  before that): ``DELETE /projects/:id`` answers 202 ``{"message": "202 Accepted"}`` and
  only *marks* it for deletion. Marking archives it, sets ``marked_for_deletion_at`` and
  ``marked_for_deletion_on`` (the day it was marked) and renames its name and path to
  ``<path>-deletion_scheduled-<id>``; the old path stays behind as a redirect, so ``GET
  /projects/<old path>`` still answers the marked project (API lookups follow redirects)
  until a new project takes that path, which drops the redirect. A second plain DELETE is
  400 ``{"message": "Project has been already marked for deletion"}``. The project is
  removed by a second DELETE with ``permanently_remove=true`` and ``full_path`` = its
  (renamed) full path; without the mark that is 400 ``"Project must be marked for deletion
  first."``, with another path 400 ``"`full_path` is incorrect. You must enter the
  complete path for the project."``, and where the instance forbids immediate deletion
  (``immediate_deletion_allowed=False``, as GitLab.com and Dedicated do) 400
  ``"`permanently_remove` option is not permitted on this instance."``. Otherwise GitLab
  removes it after its retention period (``deletion_adjourned_period``, 30 days by
  default): a test plays the daily worker with ``run_adjourned_deletion(today)``. With
  ``delayed_deletion=False`` (Free self-managed before 18.0) a DELETE removes at once.
- A commit is all or nothing: ``create`` of an existing file is 400 ``{"message": "A file
  with this name already exists"}``, ``update``/``delete``/``move`` of a missing one 400
  ``"A file with this name doesn't exist"``. Content is ``text`` or ``base64``.
- A CI/CD variable is unique per (key, environment_scope): a duplicate is 400
  ``{"message": {"key": ["(KEY) has already been taken"]}}``. With several scopes for one
  key, a GET/PUT/DELETE without ``filter[environment_scope]`` is 409.
- A group (``POST /groups``) needs ``name`` and ``path``; a taken path under the same
  parent is 400 ``{"message": "Failed to save group {:path=>[\"has already been taken\"]}"}``
  and an unknown ``parent_id`` is 404 ``{"message": "404 Group Not Found"}``.
- Protecting a protected branch again is 409 ``{"message": "Protected branch 'main'
  already exists"}``.
- Lists are paginated (``page``, ``per_page`` default 20, max 100) with ``X-Page``,
  ``X-Per-Page``, ``X-Total``, ``X-Total-Pages``, ``X-Next-Page``, ``X-Prev-Page`` and a
  ``Link`` header (``rel="next"/"prev"/"first"/"last"``), which python-gitlab follows.

Sources (followed first; where silent, GitLab's answers as quoted in its issue tracker;
where nothing was found it says "assumed"):

- REST API conventions, authentication, status codes, pagination, namespaced path
  encoding: https://docs.gitlab.com/api/rest/ (and https://docs.gitlab.com/api/rest/authentication/)
- Projects: https://docs.gitlab.com/api/projects/
- Groups: https://docs.gitlab.com/api/groups/ ("New group"; the 400 text for a taken path
  is quoted in https://github.com/20tab/talos/issues/53 and NARKOZ/gitlab#605)
- Commits ("Create a commit with multiple files and actions"):
  https://docs.gitlab.com/ee/api/commits.html
- Repository files ("Get file from repository", base64 ``content``, ``blob_id``,
  ``last_commit_id``): https://docs.gitlab.com/ee/api/repository_files.html
- Project-level CI/CD variables and the ``filter`` parameter:
  https://docs.gitlab.com/ee/api/project_level_variables.html
- Protected branches: https://docs.gitlab.com/api/protected_branches/ (the 409 text is
  quoted in https://gitlab.com/gitlab-org/gitlab/-/issues/241605 and the status in
  https://gitlab.com/gitlab-org/gitlab/-/issues/280805)
- Pipelines: https://docs.gitlab.com/api/pipelines/
- Current user: https://docs.gitlab.com/api/users/
- Merge requests (``GET /projects/:id/merge_requests/:merge_request_iid``, its ``iid``,
  ``state`` opened/closed/merged, ``labels``, ``source_branch``, ``web_url``):
  https://docs.gitlab.com/api/merge_requests/; their notes ("Create new merge request note":
  ``POST /projects/:id/merge_requests/:merge_request_iid/notes`` with a required ``body``,
  201 and the note with ``noteable_type: "MergeRequest"``, ``noteable_iid``, ``system:
  false``; "List all merge request notes"): https://docs.gitlab.com/api/notes/ (the
  python-gitlab manager that calls it: ``gitlab/v4/objects/notes.py``
  ``ProjectMergeRequestNoteManager``). An unknown merge request is 404 ``{"message": "404
  Not found"}``; a missing ``body`` is 400 ``{"error": "body is missing"}``.
- Delayed deletion: gitlabhq/gitlabhq ``app/services/projects/mark_for_deletion_service.rb``
  (the rename, ``archived``, ``marked_for_deletion_at``) and
  ``app/services/namespaces/mark_for_deletion_base_service.rb`` (``-deletion_scheduled-<id>``,
  "has been already marked for deletion"), ``ee/spec/requests/api/projects_spec.rb``
  ("DELETE /projects/:id": 202, the ``permanently_remove`` and ``full_path`` errors),
  ``lib/api/entities`` (``marked_for_deletion_on`` is the marking date),
  ``app/models/route.rb`` (a rename leaves a ``RedirectRoute``; a new route at that path
  deletes it), ``lib/api/helpers.rb`` (``find_project`` follows redirects),
  ``app/workers/adjourned_projects_deletion_cron_worker.rb`` (removal of projects marked
  before ``deletion_adjourned_period`` days ago), ``lib/api/settings.rb`` (the period
  defaults to 30 days) and ``doc/administration/settings/visibility_and_access_controls.md``
  ("Immediate deletion": the ``allow_immediate_namespaces_deletion`` instance setting, off
  on GitLab.com and Dedicated).
- Assumed: the text and order of the "not permitted on this instance" refusal for projects
  (quoted for groups in GitLab 18.5); the 409 text for an ambiguous variable; "404 Not
  found" for an unknown protected branch; the 400 text for a commit to a missing branch without
  ``start_branch``; masked values need 8 characters (``{"value": ["is invalid"]}``); the
  400 text for an invalid group path.

Simplifications: one user (the token's), who may do everything; a project needs a
``namespace_id`` of a known group (no personal namespaces: 400 otherwise); merge requests
are opened, labelled, merged and closed by tests (``open_merge_request``,
``set_merge_request``), not through the API, and only read and commented on through it; no
tags, members or webhooks; pipelines never run by themselves (a test moves them with
``set_pipeline_status``); a pipeline is created for a commit only if the committed tree
has ``.gitlab-ci.yml``, as GitLab does, on any branch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from sandbox.standins._server import LoopbackServer

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100

ACCESS_LEVEL_DESCRIPTIONS = {
    0: "No one",
    30: "Developers + Maintainers",
    40: "Maintainers",
    60: "Admins",
}

_VARIABLE_KEY = re.compile(r"^[a-zA-Z0-9_]+$")
_ACTIONS = ("create", "update", "delete", "move", "chmod")


class GitLabError(Exception):
    """An answer GitLab would give instead of success."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


def _not_found(what: str) -> GitLabError:
    return GitLabError(404, {"message": f"404 {what} Not Found"})


def _missing(name: str) -> GitLabError:
    return GitLabError(400, {"error": f"{name} is missing"})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _blob_id(content: bytes) -> str:
    return _sha1(b"blob %d\0" % len(content) + content)


def _as_bool(value: Any, default: bool = False) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes", "t")


# --- what the stand-in keeps -------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request and the status it got; ``path`` is as sent (still URL-encoded)."""

    method: str
    path: str
    status: int
    query: str = ""
    """The query string as sent (python-gitlab sends a DELETE's options there)."""


@dataclass
class _Group:
    id: int
    full_path: str
    parent_id: int | None

    @property
    def path(self) -> str:
        return self.full_path.rsplit("/", 1)[-1]


@dataclass
class _Commit:
    id: str
    message: str
    parent_ids: list[str]
    created_at: str
    tree: dict[str, bytes]
    changed: dict[str, str]
    """file path -> the commit that last changed it, as of this commit."""
    additions: int = 0
    deletions: int = 0


@dataclass
class _Pipeline:
    id: int
    iid: int
    sha: str
    ref: str
    status: str
    created_at: str
    updated_at: str


@dataclass
class _MergeRequest:
    id: int
    iid: int
    title: str
    source_branch: str
    target_branch: str
    labels: list[str]
    state: str
    created_at: str
    notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Project:
    id: int
    name: str
    path: str
    namespace: _Group
    description: str | None
    visibility: str
    created_at: str
    default_branch: str
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    variables: list[dict[str, Any]] = field(default_factory=list)
    protected: list[dict[str, Any]] = field(default_factory=list)
    pipelines: list[_Pipeline] = field(default_factory=list)
    merge_requests: dict[int, _MergeRequest] = field(default_factory=dict)
    archived: bool = False
    marked_for_deletion_on: date | None = None

    @property
    def full_path(self) -> str:
        return f"{self.namespace.full_path}/{self.path}"


@dataclass
class _Failure:
    method: str
    path_prefix: str
    status: int
    times: int


@dataclass
class _Call:
    request: web.Request
    args: list[str]
    params: dict[str, Any]


_Handler = Callable[[_Call], Awaitable[web.Response]]


class GitLabStandIn(LoopbackServer):
    """A GitLab REST API v4 over HTTP on loopback; see the module docstring."""

    service = "GitLab stand-in"

    def __init__(
        self,
        *,
        token: str,
        groups: Sequence[tuple[int, str]],
        username: str = "platform-bot",
        user_id: int = 1,
        delayed_deletion: bool = True,
        immediate_deletion_allowed: bool = True,
        deletion_adjourned_period: int = 30,
    ) -> None:
        super().__init__()
        self._token = token
        self.delayed_deletion = delayed_deletion
        """A DELETE only marks the project (GitLab 18+, Premium, GitLab.com); False: it is
        removed at once, as on Free self-managed before 18.0."""
        self.immediate_deletion_allowed = immediate_deletion_allowed
        """``permanently_remove`` is allowed (self-managed default); False as on GitLab.com."""
        self.deletion_adjourned_period = deletion_adjourned_period
        """Days a marked project is kept before GitLab removes it."""
        self._user = {
            "id": user_id,
            "username": username,
            "name": username.replace("-", " ").title(),
            "state": "active",
            "email": f"{username}@example.com",
            "avatar_url": None,
            "web_url": "",
            "is_admin": False,
            "bot": True,
        }
        by_path = {path.strip("/"): gid for gid, path in groups}
        self._groups: dict[int, _Group] = {}
        for gid, raw_path in groups:
            full_path = raw_path.strip("/")
            parent = full_path.rsplit("/", 1)[0] if "/" in full_path else None
            self._groups[gid] = _Group(gid, full_path, by_path.get(parent) if parent else None)
        self._projects: dict[int, _Project] = {}
        self._redirects: dict[str, int] = {}
        """Old full path (lowercase) -> the project renamed away from it."""
        self._next_project_id = 1
        self._next_pipeline_id = 1
        self._next_record_id = 1
        self._commit_counter = 0
        self._failures: list[_Failure] = []
        self.requests: list[RecordedRequest] = []
        self._routes: list[tuple[str, tuple[str, ...], _Handler]] = [
            ("GET", ("user",), self._get_user),
            ("GET", ("groups",), self._list_groups),
            ("POST", ("groups",), self._create_group),
            ("GET", ("groups", "*"), self._get_group),
            ("GET", ("groups", "*", "subgroups"), self._list_subgroups),
            ("GET", ("groups", "*", "projects"), self._list_group_projects),
            ("GET", ("projects",), self._list_projects),
            ("POST", ("projects",), self._create_project),
            ("GET", ("projects", "*"), self._get_project),
            ("DELETE", ("projects", "*"), self._delete_project),
            ("GET", ("projects", "*", "repository", "commits"), self._list_commits),
            ("POST", ("projects", "*", "repository", "commits"), self._create_commit),
            ("GET", ("projects", "*", "repository", "commits", "*"), self._get_commit),
            ("GET", ("projects", "*", "repository", "branches"), self._list_branches),
            ("GET", ("projects", "*", "repository", "branches", "*"), self._get_branch),
            ("GET", ("projects", "*", "repository", "files", "*"), self._get_file),
            ("GET", ("projects", "*", "repository", "files", "*", "raw"), self._get_raw),
            ("GET", ("projects", "*", "variables"), self._list_variables),
            ("POST", ("projects", "*", "variables"), self._create_variable),
            ("GET", ("projects", "*", "variables", "*"), self._get_variable),
            ("PUT", ("projects", "*", "variables", "*"), self._update_variable),
            ("DELETE", ("projects", "*", "variables", "*"), self._delete_variable),
            ("GET", ("projects", "*", "protected_branches"), self._list_protected),
            ("POST", ("projects", "*", "protected_branches"), self._protect),
            ("GET", ("projects", "*", "protected_branches", "*"), self._get_protected),
            ("DELETE", ("projects", "*", "protected_branches", "*"), self._unprotect),
            ("GET", ("projects", "*", "pipelines"), self._list_pipelines),
            ("GET", ("projects", "*", "pipelines", "*"), self._get_pipeline),
            ("GET", ("projects", "*", "merge_requests", "*"), self._get_merge_request),
            ("GET", ("projects", "*", "merge_requests", "*", "notes"), self._list_notes),
            ("POST", ("projects", "*", "merge_requests", "*", "notes"), self._create_note),
        ]

    # lifecycle

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/v4/{tail:.*}", self._dispatch)

    @property
    def url(self) -> str:
        """What the bot uses as GITLAB_URL (python-gitlab appends ``/api/v4``)."""
        return self.base_url

    # what tests read and steer

    def project(self, path: str) -> dict[str, Any]:
        """The project as ``GET /projects/:id`` shows it; KeyError if there is none."""
        return self._project_json(self._project_by_path(path))

    def files(self, project_path: str, ref: str = "main") -> dict[str, str]:
        """Every file at ``ref`` (branch or commit), decoded as UTF-8."""
        project = self._project_by_path(project_path)
        commit = self._resolve_ref(project, ref)
        if commit is None:
            return {}
        return {p: c.decode("utf-8", "replace") for p, c in sorted(commit.tree.items())}

    def variables(self, project_path: str) -> list[dict[str, Any]]:
        return [dict(v) for v in self._project_by_path(project_path).variables]

    def protected_branches(self, project_path: str) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(p)) for p in self._project_by_path(project_path).protected]

    def commits(self, project_path: str, ref: str | None = None) -> list[dict[str, Any]]:
        """Commits reachable from ``ref`` (the default branch if None), newest first."""
        project = self._project_by_path(project_path)
        return [
            self._commit_json(project, c)
            for c in self._history(project, ref or project.default_branch)
        ]

    def pipelines(self, project_path: str) -> list[dict[str, Any]]:
        """Pipelines, newest first."""
        project = self._project_by_path(project_path)
        return [self._pipeline_json(project, p) for p in reversed(project.pipelines)]

    def set_pipeline_status(self, project_path: str, pipeline_id: int, status: str) -> None:
        """Move a pipeline along (running, success, failed, canceled, ...)."""
        project = self._project_by_path(project_path)
        for pipeline in project.pipelines:
            if pipeline.id == pipeline_id:
                pipeline.status = status
                pipeline.updated_at = _now()
                return
        raise KeyError(f"no pipeline {pipeline_id} in {project_path}")

    def open_merge_request(
        self,
        project_path: str,
        *,
        source_branch: str,
        title: str = "A change",
        labels: Sequence[str] = (),
        target_branch: str = "main",
    ) -> dict[str, Any]:
        """Open a merge request (as a person would in the UI); as the API shows it."""
        project = self._project_by_path(project_path)
        iid = len(project.merge_requests) + 1
        self._next_record_id += 1
        project.merge_requests[iid] = _MergeRequest(
            id=self._next_record_id,
            iid=iid,
            title=title,
            source_branch=source_branch,
            target_branch=target_branch,
            labels=list(labels),
            state="opened",
            created_at=_now(),
        )
        return self._merge_request_json(project, project.merge_requests[iid])

    def set_merge_request(
        self,
        project_path: str,
        iid: int,
        *,
        labels: Sequence[str] | None = None,
        state: str | None = None,
    ) -> dict[str, Any]:
        """Relabel, merge (`merged`) or close (`closed`) a merge request."""
        project = self._project_by_path(project_path)
        merge_request = project.merge_requests[iid]
        if labels is not None:
            merge_request.labels = list(labels)
        if state is not None:
            merge_request.state = state
        return self._merge_request_json(project, merge_request)

    def notes(self, project_path: str, iid: int) -> list[dict[str, Any]]:
        """A merge request's notes, oldest first."""
        return [dict(n) for n in self._project_by_path(project_path).merge_requests[iid].notes]

    def run_adjourned_deletion(self, today: date | None = None) -> list[str]:
        """What GitLab's daily AdjournedProjectsDeletionCronWorker does: remove the projects
        marked before ``deletion_adjourned_period`` days ago. Returns their full paths."""
        cutoff = (today or datetime.now(UTC).date()) - timedelta(
            days=self.deletion_adjourned_period
        )
        due = [
            p
            for p in self._projects.values()
            if p.marked_for_deletion_on is not None and p.marked_for_deletion_on < cutoff
        ]
        for project in due:
            self._remove(project)
        return [p.full_path for p in due]

    def fail_next(self, method: str, path_prefix: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` matching requests with ``status`` (after auth).

        ``method`` may be ``"*"``; ``path_prefix`` is matched against the path as sent,
        with or without ``/api/v4``, and against its URL-decoded form.
        """
        self._failures.append(_Failure(method.upper(), path_prefix, status, times))

    # HTTP plumbing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.rel_url.raw_path
        try:
            response = await self._answer(request, raw_path)
        except GitLabError as error:
            response = web.json_response(error.body, status=error.status)
        self.requests.append(
            RecordedRequest(
                request.method, raw_path, response.status, request.rel_url.raw_query_string
            )
        )
        return response

    async def _answer(self, request: web.Request, raw_path: str) -> web.Response:
        if not self._authenticated(request):
            raise GitLabError(401, {"message": "401 Unauthorized"})
        self._maybe_fail(request.method, raw_path)
        tail = raw_path[len("/api/v4/") :].strip("/")
        segments = [unquote(s) for s in tail.split("/")] if tail else []
        for method, pattern, handler in self._routes:
            if method != request.method or len(pattern) != len(segments):
                continue
            args: list[str] = []
            for want, got in zip(pattern, segments, strict=True):
                if want == "*":
                    args.append(got)
                elif want != got:
                    break
            else:
                params = await self._params(request)
                return await handler(_Call(request, args, params))
        raise GitLabError(404, {"error": "404 Not Found"})

    def _authenticated(self, request: web.Request) -> bool:
        token = request.headers.get("PRIVATE-TOKEN")
        auth = request.headers.get("Authorization", "")
        if token is None and auth.lower().startswith("bearer "):
            token = auth[len("bearer ") :].strip()
        if token is None:
            token = request.query.get("private_token") or request.query.get("access_token")
        return token is not None and token == self._token

    def _maybe_fail(self, method: str, raw_path: str) -> None:
        short = raw_path.removeprefix("/api/v4")
        candidates = (raw_path, short, unquote(raw_path), unquote(short))
        for failure in self._failures:
            if failure.method not in ("*", method):
                continue
            if not any(c.startswith(failure.path_prefix) for c in candidates):
                continue
            failure.times -= 1
            if failure.times <= 0:
                self._failures.remove(failure)
            texts = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
            text = texts.get(failure.status, "Error")
            raise GitLabError(failure.status, {"message": f"{failure.status} {text}"})

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except json.JSONDecodeError as error:
                    raise GitLabError(400, {"error": "400 Bad request"}) from error
                if isinstance(body, dict):
                    params.update(body)
            else:
                params.update(dict(await request.post()))
        # hashes arrive as filter[environment_scope] (query) or {"filter": {...}} (JSON)
        for key in list(params):
            match = re.fullmatch(r"(\w+)\[(\w+)\]", key)
            if match:
                params.setdefault(match[1], {})
                if isinstance(params[match[1]], dict):
                    params[match[1]][match[2]] = params.pop(key)
        return params

    def _paginated(self, call: _Call, items: Sequence[dict[str, Any]]) -> web.Response:
        try:
            page = max(1, int(call.params.get("page", 1)))
            per_page = int(call.params.get("per_page", DEFAULT_PER_PAGE))
        except (TypeError, ValueError) as error:
            raise GitLabError(400, {"error": "page is invalid"}) from error
        per_page = min(max(per_page, 1), MAX_PER_PAGE)
        total = len(items)
        total_pages = max(1, math.ceil(total / per_page))
        chunk = list(items[(page - 1) * per_page : page * per_page])
        url = call.request.url

        def link(to: int) -> str:
            return str(url.update_query(page=str(to), per_page=str(per_page)))

        links = [f'<{link(1)}>; rel="first"', f'<{link(total_pages)}>; rel="last"']
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(total),
            "X-Total-Pages": str(total_pages),
            "X-Next-Page": str(page + 1) if page < total_pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        if page < total_pages:
            links.insert(0, f'<{link(page + 1)}>; rel="next"')
        if page > 1:
            links.insert(0, f'<{link(page - 1)}>; rel="prev"')
        headers["Link"] = ", ".join(links)
        return web.json_response(chunk, headers=headers)

    # lookups

    def _group(self, ref: str) -> _Group:
        if ref.isdigit() and int(ref) in self._groups:
            return self._groups[int(ref)]
        for group in self._groups.values():
            if group.full_path.lower() == ref.lower():
                return group
        raise _not_found("Group")

    def _project(self, ref: str) -> _Project:
        """By id, or by full path, following the redirect a rename left behind."""
        if ref.isdigit() and int(ref) in self._projects:
            return self._projects[int(ref)]
        for project in self._projects.values():
            if project.full_path.lower() == ref.lower():
                return project
        moved = self._redirects.get(ref.lower())
        if moved is not None and moved in self._projects:
            return self._projects[moved]
        raise _not_found("Project")

    def _project_by_path(self, path: str) -> _Project:
        try:
            return self._project(path)
        except GitLabError:
            raise KeyError(f"no project {path!r}") from None

    def _resolve_ref(self, project: _Project, ref: str) -> _Commit | None:
        if ref in project.branches:
            return project.commits[project.branches[ref]]
        for sha, commit in project.commits.items():
            if len(ref) >= 7 and sha.startswith(ref):
                return commit
        return None

    def _history(self, project: _Project, ref: str) -> list[_Commit]:
        commit = self._resolve_ref(project, ref)
        out: list[_Commit] = []
        while commit is not None:
            out.append(commit)
            commit = project.commits[commit.parent_ids[0]] if commit.parent_ids else None
        return out

    # JSON shapes

    def _group_json(self, group: _Group) -> dict[str, Any]:
        return {
            "id": group.id,
            "name": group.path,
            "path": group.path,
            "full_name": group.full_path.replace("/", " / "),
            "full_path": group.full_path,
            "parent_id": group.parent_id,
            "description": "",
            "visibility": "private",
            "web_url": f"{self._base_url}/groups/{group.full_path}",
        }

    def _project_json(self, project: _Project) -> dict[str, Any]:
        web_url = f"{self._base_url}/{project.full_path}"
        ns = project.namespace
        empty = not project.branches
        head = project.branches.get(project.default_branch)
        on = project.marked_for_deletion_on
        marked = on.isoformat() if on is not None else None
        readme_url = None
        if head is not None and "README.md" in project.commits[head].tree:
            readme_url = f"{web_url}/-/blob/{project.default_branch}/README.md"
        return {
            "id": project.id,
            "description": project.description,
            "name": project.name,
            "name_with_namespace": f"{ns.full_path.replace('/', ' / ')} / {project.name}",
            "path": project.path,
            "path_with_namespace": project.full_path,
            "created_at": project.created_at,
            "last_activity_at": project.created_at,
            "default_branch": project.default_branch,
            "visibility": project.visibility,
            "archived": project.archived,
            "marked_for_deletion_at": marked,
            "marked_for_deletion_on": marked,
            "empty_repo": empty,
            "web_url": web_url,
            "http_url_to_repo": f"{web_url}.git",
            "ssh_url_to_repo": f"git@{(self._base_url or '').split('://')[-1]}:{project.full_path}.git",
            "readme_url": readme_url,
            "namespace": {
                "id": ns.id,
                "name": ns.path,
                "path": ns.path,
                "kind": "group",
                "full_path": ns.full_path,
                "parent_id": ns.parent_id,
                "web_url": f"{self._base_url}/groups/{ns.full_path}",
            },
        }

    def _commit_json(self, project: _Project, commit: _Commit) -> dict[str, Any]:
        user = self._user
        return {
            "id": commit.id,
            "short_id": commit.id[:8],
            "title": commit.message.split("\n", 1)[0],
            "message": commit.message,
            "parent_ids": list(commit.parent_ids),
            "created_at": commit.created_at,
            "authored_date": commit.created_at,
            "committed_date": commit.created_at,
            "author_name": user["name"],
            "author_email": user["email"],
            "committer_name": user["name"],
            "committer_email": user["email"],
            "web_url": f"{self._base_url}/{project.full_path}/-/commit/{commit.id}",
            "stats": {
                "additions": commit.additions,
                "deletions": commit.deletions,
                "total": commit.additions + commit.deletions,
            },
            "status": None,
            "project_id": project.id,
        }

    def _pipeline_json(self, project: _Project, pipeline: _Pipeline) -> dict[str, Any]:
        return {
            "id": pipeline.id,
            "iid": pipeline.iid,
            "project_id": project.id,
            "sha": pipeline.sha,
            "ref": pipeline.ref,
            "status": pipeline.status,
            "source": "push",
            "created_at": pipeline.created_at,
            "updated_at": pipeline.updated_at,
            "web_url": f"{self._base_url}/{project.full_path}/-/pipelines/{pipeline.id}",
        }

    # users and groups

    async def _get_user(self, call: _Call) -> web.Response:
        return web.json_response(self._user)

    async def _list_groups(self, call: _Call) -> web.Response:
        search = str(call.params.get("search", "")).lower()
        groups = [
            self._group_json(g)
            for g in sorted(self._groups.values(), key=lambda g: g.full_path)
            if search in g.full_path.lower()
        ]
        return self._paginated(call, groups)

    async def _get_group(self, call: _Call) -> web.Response:
        return web.json_response(self._group_json(self._group(call.args[0])))

    async def _create_group(self, call: _Call) -> web.Response:
        params = call.params
        missing = [n for n in ("name", "path") if not params.get(n)]
        if missing:
            raise GitLabError(400, {"error": ", ".join(f"{n} is missing" for n in missing)})
        path = str(params["path"])
        if "/" in path or not re.fullmatch(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*", path):
            raise GitLabError(400, {"message": 'Failed to save group {:path=>["is invalid"]}'})
        parent: _Group | None = None
        if params.get("parent_id") is not None:
            parent = self._group(str(params["parent_id"]))
        full_path = f"{parent.full_path}/{path}" if parent else path
        if any(g.full_path.lower() == full_path.lower() for g in self._groups.values()):
            raise GitLabError(
                400, {"message": 'Failed to save group {:path=>["has already been taken"]}'}
            )
        group = _Group(max(self._groups, default=0) + 1, full_path, parent.id if parent else None)
        self._groups[group.id] = group
        return web.json_response(self._group_json(group), status=201)

    async def _list_subgroups(self, call: _Call) -> web.Response:
        parent = self._group(call.args[0])
        children = [g for g in self._groups.values() if g.parent_id == parent.id]
        return self._paginated(call, [self._group_json(g) for g in children])

    async def _list_group_projects(self, call: _Call) -> web.Response:
        group = self._group(call.args[0])
        projects = [p for p in self._projects.values() if p.namespace.id == group.id]
        return self._paginated(call, [self._project_json(p) for p in projects])

    # projects

    async def _list_projects(self, call: _Call) -> web.Response:
        search = str(call.params.get("search", "")).lower()
        projects = [
            self._project_json(p)
            for p in sorted(self._projects.values(), key=lambda p: -p.id)
            if search in p.name.lower() or search in p.path.lower()
        ]
        return self._paginated(call, projects)

    async def _get_project(self, call: _Call) -> web.Response:
        return web.json_response(self._project_json(self._project(call.args[0])))

    async def _create_project(self, call: _Call) -> web.Response:
        params = call.params
        name = params.get("name")
        path = params.get("path")
        if not name and not path:
            raise GitLabError(
                400, {"error": "name, path are missing, at least one parameter must be provided"}
            )
        name = str(name or path)
        path = str(path or re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-"))
        namespace_ref = params.get("namespace_id")
        if namespace_ref is None:
            raise GitLabError(
                400, {"message": {"namespace": ["is not valid"]}}
            )  # a personal namespace is not kept: assumed
        try:
            namespace = self._group(str(namespace_ref))
        except GitLabError:
            raise GitLabError(404, {"message": "404 Namespace Not Found"}) from None
        taken: dict[str, list[str]] = {}
        for other in self._projects.values():
            if other.namespace.id != namespace.id:
                continue
            if other.name.lower() == name.lower():
                taken["name"] = ["has already been taken"]
            if other.path.lower() == path.lower():
                taken["path"] = ["has already been taken"]
        if taken:
            raise GitLabError(400, {"message": taken})
        project = _Project(
            id=self._next_project_id,
            name=name,
            path=path,
            namespace=namespace,
            description=params.get("description"),
            visibility=str(params.get("visibility", "private")),
            created_at=_now(),
            # the docs: default_branch "requires initialize_with_readme to be true"
            default_branch=str(
                (_as_bool(params.get("initialize_with_readme")) and params.get("default_branch"))
                or "main"
            ),
        )
        self._next_project_id += 1
        self._projects[project.id] = project
        # Route#delete_conflicting_redirects: the new project takes the path for good
        self._redirects.pop(project.full_path.lower(), None)
        if _as_bool(params.get("initialize_with_readme")):
            readme = f"# {name}\n".encode()
            self._commit(project, project.default_branch, "Initial commit", {"README.md": readme})
        return web.json_response(self._project_json(project), status=201)

    async def _delete_project(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        accepted = web.json_response({"message": "202 Accepted"}, status=202)
        if not self.delayed_deletion:
            self._remove(project)
            return accepted
        if _as_bool(call.params.get("permanently_remove")):
            if not self.immediate_deletion_allowed:
                raise GitLabError(
                    400,
                    {"message": "`permanently_remove` option is not permitted on this instance."},
                )
            if project.marked_for_deletion_on is None:
                raise GitLabError(400, {"message": "Project must be marked for deletion first."})
            if call.params.get("full_path") != project.full_path:
                raise GitLabError(
                    400,
                    {
                        "message": "`full_path` is incorrect. You must enter the complete path "
                        "for the project."
                    },
                )
            self._remove(project)
            return accepted
        if project.marked_for_deletion_on is not None:
            raise GitLabError(400, {"message": "Project has been already marked for deletion"})
        self._redirects[project.full_path.lower()] = project.id
        suffix = f"-deletion_scheduled-{project.id}"
        project.name, project.path = project.name + suffix, project.path + suffix
        project.archived = True
        project.marked_for_deletion_on = datetime.now(UTC).date()
        return accepted

    def _remove(self, project: _Project) -> None:
        self._projects.pop(project.id, None)
        for old in [old for old, pid in self._redirects.items() if pid == project.id]:
            del self._redirects[old]

    # repository

    def _commit(
        self,
        project: _Project,
        branch: str,
        message: str,
        tree: dict[str, bytes],
        parent: _Commit | None = None,
        touched: Sequence[str] = (),
        additions: int = 0,
        deletions: int = 0,
    ) -> _Commit:
        self._commit_counter += 1
        parent_id = parent.id if parent else ""
        seed = f"{project.id}\0{parent_id}\0{message}\0{self._commit_counter}".encode()
        sha = _sha1(seed)
        changed = dict(parent.changed) if parent else {}
        for path in touched or tree:
            changed[path] = sha
        changed = {p: c for p, c in changed.items() if p in tree}
        commit = _Commit(
            id=sha,
            message=message,
            parent_ids=[parent.id] if parent else [],
            created_at=_now(),
            tree=tree,
            changed=changed,
            additions=additions,
            deletions=deletions,
        )
        project.commits[sha] = commit
        project.branches[branch] = sha
        if ".gitlab-ci.yml" in tree:
            now = _now()
            project.pipelines.append(
                _Pipeline(
                    self._next_pipeline_id,
                    len(project.pipelines) + 1,
                    sha,
                    branch,
                    "pending",
                    now,
                    now,
                )
            )
            self._next_pipeline_id += 1
        return commit

    async def _create_commit(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        params = call.params
        for required in ("branch", "commit_message", "actions"):
            if not params.get(required):
                raise _missing(required)
        branch = str(params["branch"])
        actions = params["actions"]
        if not isinstance(actions, list):
            raise GitLabError(400, {"error": "actions is invalid"})
        if branch in project.branches:
            parent: _Commit | None = project.commits[project.branches[branch]]
        elif params.get("start_branch") or params.get("start_sha"):
            start = str(params.get("start_branch") or params.get("start_sha"))
            parent = self._resolve_ref(project, start)
            if parent is None:
                raise GitLabError(400, {"message": f"Invalid reference name: {start}"})
        elif not project.branches:
            parent = None  # an empty repository: the first commit makes the branch
        else:
            raise GitLabError(
                400, {"message": "You can only create or edit files when you are on a branch"}
            )
        tree = dict(parent.tree) if parent else {}
        touched: list[str] = []
        additions = deletions = 0
        for index, action in enumerate(actions):
            if not isinstance(action, dict):
                raise GitLabError(400, {"error": f"actions[{index}] is invalid"})
            kind = action.get("action")
            if kind not in _ACTIONS:
                raise GitLabError(
                    400, {"error": f"actions[{index}][action] does not have a valid value"}
                )
            file_path = str(action.get("file_path") or "").strip("/")
            if not file_path:
                raise _missing(f"actions[{index}][file_path]")
            content = self._content(action, index)
            if kind == "create":
                if file_path in tree:
                    raise GitLabError(400, {"message": "A file with this name already exists"})
                tree[file_path] = content
                additions += content.count(b"\n") or int(bool(content))
            elif kind in ("update", "delete", "move", "chmod"):
                source = (
                    str(action.get("previous_path") or file_path) if kind == "move" else (file_path)
                )
                if source not in tree:
                    raise GitLabError(400, {"message": "A file with this name doesn't exist"})
                old = tree[source]
                if kind == "update":
                    tree[file_path] = content
                    deletions += old.count(b"\n")
                    additions += content.count(b"\n")
                elif kind == "delete":
                    del tree[file_path]
                    deletions += old.count(b"\n") or int(bool(old))
                elif kind == "move":
                    if file_path in tree and file_path != source:
                        raise GitLabError(400, {"message": "A file with this name already exists"})
                    del tree[source]
                    tree[file_path] = content if action.get("content") is not None else old
                    touched.append(source)
            touched.append(file_path)
        commit = self._commit(
            project,
            branch,
            str(params["commit_message"]),
            tree,
            parent,
            touched or ["."],
            additions,
            deletions,
        )
        return web.json_response(self._commit_json(project, commit), status=201)

    @staticmethod
    def _content(action: dict[str, Any], index: int) -> bytes:
        raw = action.get("content")
        if raw is None:
            return b""
        encoding = action.get("encoding", "text") or "text"
        if encoding == "text":
            return str(raw).encode()
        if encoding == "base64":
            try:
                return base64.b64decode(str(raw), validate=True)
            except (binascii.Error, ValueError) as error:
                raise GitLabError(400, {"message": "Invalid base64 content"}) from error
        raise GitLabError(400, {"error": f"actions[{index}][encoding] does not have a valid value"})

    async def _list_commits(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        ref = str(call.params.get("ref_name") or project.default_branch)
        history = self._history(project, ref)
        path = call.params.get("path")
        if path:
            history = [
                c
                for c in history
                if c.tree.get(str(path))
                != (project.commits[c.parent_ids[0]].tree.get(str(path)) if c.parent_ids else None)
            ]
        return self._paginated(call, [self._commit_json(project, c) for c in history])

    async def _get_commit(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        commit = self._resolve_ref(project, call.args[1])
        if commit is None:
            raise _not_found("Commit")
        return web.json_response(self._commit_json(project, commit))

    def _branch_json(self, project: _Project, name: str) -> dict[str, Any]:
        commit = project.commits[project.branches[name]]
        return {
            "name": name,
            "default": name == project.default_branch,
            "protected": any(p["name"] == name for p in project.protected),
            "merged": False,
            "commit": self._commit_json(project, commit),
            "web_url": f"{self._base_url}/{project.full_path}/-/tree/{name}",
        }

    async def _list_branches(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        names = sorted(project.branches)
        return self._paginated(call, [self._branch_json(project, n) for n in names])

    async def _get_branch(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        if call.args[1] not in project.branches:
            raise _not_found("Branch")
        return web.json_response(self._branch_json(project, call.args[1]))

    def _file(self, call: _Call) -> tuple[_Project, _Commit, str, bytes]:
        project = self._project(call.args[0])
        ref = call.params.get("ref")
        if not ref:
            raise _missing("ref")
        commit = self._resolve_ref(project, str(ref))
        file_path = call.args[1]
        if commit is None or file_path not in commit.tree:
            raise _not_found("File")
        return project, commit, file_path, commit.tree[file_path]

    async def _get_file(self, call: _Call) -> web.Response:
        _, commit, file_path, content = self._file(call)
        return web.json_response(
            {
                "file_name": file_path.rsplit("/", 1)[-1],
                "file_path": file_path,
                "size": len(content),
                "encoding": "base64",
                "content": base64.b64encode(content).decode(),
                "content_sha256": hashlib.sha256(content).hexdigest(),
                "ref": call.params["ref"],
                "blob_id": _blob_id(content),
                "commit_id": commit.id,
                "last_commit_id": commit.changed.get(file_path, commit.id),
                "execute_filemode": False,
            }
        )

    async def _get_raw(self, call: _Call) -> web.Response:
        _, _, _, content = self._file(call)
        return web.Response(body=content, content_type="text/plain")

    # CI/CD variables

    def _find_variables(self, project: _Project, key: str, call: _Call) -> list[dict[str, Any]]:
        found = [v for v in project.variables if v["key"] == key]
        wanted = call.params.get("filter")
        if isinstance(wanted, dict) and "environment_scope" in wanted:
            found = [v for v in found if v["environment_scope"] == wanted["environment_scope"]]
        if not found:
            raise _not_found("Variable")
        if len(found) > 1:
            raise GitLabError(
                409,
                {
                    "message": "There are multiple variables with provided parameters. "
                    "Please use 'filter[environment_scope]'"
                },
            )
        return found

    async def _list_variables(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        return self._paginated(call, [dict(v) for v in project.variables])

    async def _get_variable(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        return web.json_response(self._find_variables(project, call.args[1], call)[0])

    @staticmethod
    def _check_variable(variable: dict[str, Any]) -> None:
        errors: dict[str, list[str]] = {}
        key = variable["key"]
        if len(key) > 255:
            errors.setdefault("key", []).append("is too long (maximum is 255 characters)")
        if not _VARIABLE_KEY.match(key):
            errors.setdefault("key", []).append("can contain only letters, digits and '_'.")
        if variable["masked"] and len(str(variable["value"])) < 8:
            errors.setdefault("value", []).append("is invalid")
        if errors:
            raise GitLabError(400, {"message": errors})

    async def _create_variable(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        params = call.params
        for required in ("key", "value"):
            if params.get(required) is None:
                raise _missing(required)
        variable = {
            "variable_type": str(params.get("variable_type") or "env_var"),
            "key": str(params["key"]),
            "value": str(params["value"]),
            "protected": _as_bool(params.get("protected")),
            "masked": _as_bool(params.get("masked")),
            "hidden": False,
            "raw": _as_bool(params.get("raw")),
            "environment_scope": str(params.get("environment_scope") or "*"),
            "description": params.get("description"),
        }
        self._check_variable(variable)
        for other in project.variables:
            if (other["key"], other["environment_scope"]) == (
                variable["key"],
                variable["environment_scope"],
            ):
                raise GitLabError(
                    400, {"message": {"key": [f"({variable['key']}) has already been taken"]}}
                )
        project.variables.append(variable)
        return web.json_response(variable, status=201)

    async def _update_variable(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        variable = self._find_variables(project, call.args[1], call)[0]
        updated = dict(variable)
        for name in ("value", "variable_type", "environment_scope", "description"):
            if call.params.get(name) is not None:
                updated[name] = str(call.params[name])
        for name in ("protected", "masked", "raw"):
            if name in call.params:
                updated[name] = _as_bool(call.params[name])
        self._check_variable(updated)
        for other in project.variables:
            if other is not variable and (other["key"], other["environment_scope"]) == (
                updated["key"],
                updated["environment_scope"],
            ):
                raise GitLabError(
                    400, {"message": {"key": [f"({updated['key']}) has already been taken"]}}
                )
        variable.update(updated)
        return web.json_response(variable)

    async def _delete_variable(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        variable = self._find_variables(project, call.args[1], call)[0]
        project.variables.remove(variable)
        return web.Response(status=204)

    # protected branches

    def _access_levels(self, value: Any, default: int) -> list[dict[str, Any]]:
        level = default if value is None else int(value)
        if level not in ACCESS_LEVEL_DESCRIPTIONS:
            raise GitLabError(400, {"error": "access_level does not have a valid value"})
        self._next_record_id += 1
        return [
            {
                "id": self._next_record_id,
                "access_level": level,
                "access_level_description": ACCESS_LEVEL_DESCRIPTIONS[level],
                "user_id": None,
                "group_id": None,
            }
        ]

    async def _list_protected(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        return self._paginated(call, project.protected)

    def _find_protected(self, project: _Project, name: str) -> dict[str, Any]:
        for protected in project.protected:
            if protected["name"] == name:
                return protected
        raise GitLabError(404, {"message": "404 Not found"})

    async def _get_protected(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        return web.json_response(self._find_protected(project, call.args[1]))

    async def _protect(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        name = call.params.get("name")
        if not name:
            raise _missing("name")
        if any(p["name"] == name for p in project.protected):
            raise GitLabError(409, {"message": f"Protected branch '{name}' already exists"})
        self._next_record_id += 1
        protected = {
            "id": self._next_record_id,
            "name": str(name),
            "push_access_levels": self._access_levels(call.params.get("push_access_level"), 40),
            "merge_access_levels": self._access_levels(call.params.get("merge_access_level"), 40),
            "unprotect_access_levels": self._access_levels(
                call.params.get("unprotect_access_level"), 40
            ),
            "allow_force_push": _as_bool(call.params.get("allow_force_push")),
            "code_owner_approval_required": _as_bool(
                call.params.get("code_owner_approval_required")
            ),
        }
        project.protected.append(protected)
        return web.json_response(protected, status=201)

    async def _unprotect(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        project.protected.remove(self._find_protected(project, call.args[1]))
        return web.Response(status=204)

    # pipelines

    async def _list_pipelines(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        pipelines = list(reversed(project.pipelines))
        for name in ("ref", "sha", "status"):
            if call.params.get(name):
                pipelines = [p for p in pipelines if getattr(p, name) == call.params[name]]
        return self._paginated(call, [self._pipeline_json(project, p) for p in pipelines])

    # merge requests and their notes

    def _merge_request_json(self, project: _Project, mr: _MergeRequest) -> dict[str, Any]:
        return {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "state": mr.state,
            "source_branch": mr.source_branch,
            "target_branch": mr.target_branch,
            "labels": list(mr.labels),
            "created_at": mr.created_at,
            "web_url": f"{self._base_url}/{project.full_path}/-/merge_requests/{mr.iid}",
        }

    def _merge_request(self, call: _Call) -> tuple[_Project, _MergeRequest]:
        project = self._project(call.args[0])
        found = project.merge_requests.get(int(call.args[1])) if call.args[1].isdigit() else None
        if found is None:
            raise GitLabError(404, {"message": "404 Not found"})
        return project, found

    async def _get_merge_request(self, call: _Call) -> web.Response:
        project, merge_request = self._merge_request(call)
        return web.json_response(self._merge_request_json(project, merge_request))

    async def _list_notes(self, call: _Call) -> web.Response:
        _, merge_request = self._merge_request(call)
        return self._paginated(call, list(reversed(merge_request.notes)))

    async def _create_note(self, call: _Call) -> web.Response:
        project, merge_request = self._merge_request(call)
        body = call.params.get("body")
        if not body:
            raise _missing("body")
        self._next_record_id += 1
        note = {
            "id": self._next_record_id,
            "type": None,
            "body": str(body),
            "author": dict(self._user),
            "created_at": _now(),
            "updated_at": _now(),
            "system": False,
            "noteable_id": merge_request.id,
            "noteable_type": "MergeRequest",
            "noteable_iid": merge_request.iid,
            "project_id": project.id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }
        merge_request.notes.append(note)
        return web.json_response(note, status=201)

    async def _get_pipeline(self, call: _Call) -> web.Response:
        project = self._project(call.args[0])
        for pipeline in project.pipelines:
            if str(pipeline.id) == call.args[1]:
                return web.json_response(self._pipeline_json(project, pipeline))
        raise GitLabError(404, {"message": "404 Not found"})
