"""GitLab: the repository part of the golden path, on python-gitlab.

A new service gets a project in its team's group, its skeleton in one commit, CI/CD
variables per environment and a protected default branch; deploy status reads its
pipelines. `CodeHost` (in kernel.ports.systems) is what commands and executors see;
`GitLabCodeHost` is the real implementation. python-gitlab blocks, so every call runs
in `asyncio.to_thread`.

Every `ensure_*` and `commit_files` checks what exists first, so a Run step that runs
again after a crash changes nothing twice.

Deleting follows GitLab's delayed deletion (every edition since 18.0; Premium and GitLab.com
before): `DELETE /projects/:id` only marks the project, renaming it
`<path>-deletion_scheduled-<id>` (`-deleted-<id>` on older versions) and leaving a redirect
at the old path; a second `DELETE` with `permanently_remove=true` and the renamed
`full_path` removes it, unless the instance forbids immediate deletion (GitLab.com), in
which case GitLab removes it after its retention period. Since lookups by path follow
redirects, `find_project` and `ensure_project` accept only a project at exactly that
path: a marked project must never be adopted, and its old path is free.

Failures become `AdapterError("GitLab", ...)` naming the operation and GitLab's own
message; the token never appears (GitLab does not echo it, and connection errors are
reported by type, not by their text).

API references: https://docs.gitlab.com/api/projects/, https://docs.gitlab.com/api/groups/,
https://docs.gitlab.com/ee/api/commits.html (create a commit with multiple files and
actions), https://docs.gitlab.com/ee/api/repository_files.html,
https://docs.gitlab.com/ee/api/project_level_variables.html (the `filter` parameter),
https://docs.gitlab.com/api/protected_branches/, https://docs.gitlab.com/api/pipelines/;
delayed deletion: gitlabhq `app/services/projects/mark_for_deletion_service.rb`,
`ee/spec/requests/api/projects_spec.rb` ("DELETE /projects/:id"), `app/models/route.rb`
(redirects), and `doc/administration/settings/visibility_and_access_controls.md`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

import gitlab
import gitlab.exceptions

from kernel.errors import AdapterError
from kernel.ports.systems import CiVariable, CodeHost, Pipeline, Project, ProjectRemoval

__all__ = ["CodeHost", "GitLabCodeHost"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MAINTAINER = 40
"""GitLab's access level for maintainers: who may push to and merge into a protected branch."""

DEFAULT_BRANCH = "main"
"""What a project without a default branch yet (an empty repository) will get."""

MARKED_SUFFIXES = ("-deletion_scheduled-{id}", "-deleted-{id}")
"""How GitLab renames a project it marks for deletion (now, and before 17.x)."""


def _gitlab_message(error: gitlab.exceptions.GitlabError) -> str:
    """GitLab's error text; a validation error arrives as {"field": ["problem", ...]}."""
    message: object = error.error_message
    if isinstance(message, dict):
        parts = []
        for field, problems in message.items():
            listed = problems if isinstance(problems, list) else [problems]
            parts.append(f"{field} {', '.join(str(p) for p in listed)}")
        return "; ".join(parts)
    return str(message).strip() or type(error).__name__


class GitLabCodeHost:
    """`CodeHost` on python-gitlab, against GitLab (or the sandbox's stand-in)."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self._url = url.rstrip("/")
        self._gl = gitlab.Gitlab(self._url, private_token=token, timeout=timeout)

    def __repr__(self) -> str:  # never show the token
        return f"GitLabCodeHost(url={self._url!r})"

    def close(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        self._gl.session.close()

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run a blocking python-gitlab call in a thread; failures become AdapterError."""
        try:
            return await asyncio.to_thread(fn)
        except AdapterError:
            raise
        except gitlab.exceptions.GitlabAuthenticationError as exc:
            raise AdapterError(
                "GitLab",
                f"{what} failed: the token was refused (check GITLAB_TOKEN)",
                status=exc.response_code,
            ) from exc
        except gitlab.exceptions.GitlabError as exc:
            status = exc.response_code
            suffix = f" (HTTP {status})" if status else ""
            raise AdapterError(
                "GitLab", f"{what} failed: {_gitlab_message(exc)}{suffix}", status=status
            ) from exc
        except OSError as exc:  # requests' exceptions are OSErrors
            raise AdapterError(
                "GitLab", f"{what} failed: cannot reach {self._url} ({type(exc).__name__})"
            ) from exc

    # -- projects -------------------------------------------------------------

    @staticmethod
    def _project(project: Any) -> Project:
        return Project(
            id=int(project.id),
            path_with_namespace=str(project.path_with_namespace),
            web_url=str(project.web_url),
            default_branch=str(project.default_branch or DEFAULT_BRANCH),
            marked_for_deletion_on=_marked_on(project),
        )

    def _get_sync(self, ref: str | int) -> Any | None:
        """The project by id or path (GitLab follows redirects), None if there is none."""
        try:
            return self._gl.projects.get(ref)
        except gitlab.exceptions.GitlabGetError as exc:
            if exc.response_code == 404:
                return None
            raise

    def _find_project_sync(self, path_with_namespace: str) -> Any | None:
        """The project at exactly this path, not one a redirect leads to."""
        found = self._get_sync(path_with_namespace)
        if found is None or str(found.path_with_namespace).lower() != path_with_namespace.lower():
            return None
        return found

    async def find_project(self, path_with_namespace: str) -> Project | None:
        found = await self._call(
            f"looking up project {path_with_namespace}",
            lambda: self._find_project_sync(path_with_namespace),
        )
        return self._project(found) if found is not None else None

    def _ensure_group_sync(self, full_path: str) -> Any:
        """The group `a/b/c`, creating it (and any missing parent) if needed."""
        try:
            return self._gl.groups.get(full_path)
        except gitlab.exceptions.GitlabGetError as exc:
            if exc.response_code != 404:
                raise
        parent_path, _, path = full_path.rpartition("/")
        data: dict[str, Any] = {"name": path, "path": path, "visibility": "private"}
        if parent_path:
            data["parent_id"] = self._ensure_group_sync(parent_path).id
        log.info("creating GitLab group %s", full_path)
        return self._gl.groups.create(data)

    def _ensure_project_sync(self, group: str, name: str, description: str) -> Any:
        path = f"{group}/{name}"
        existing = self._find_project_sync(path)
        if existing is not None:
            marked = _marked_on(existing)
            if marked is not None:  # never build on a project GitLab is about to remove
                raise AdapterError(
                    "GitLab",
                    f"creating project {path} failed: GitLab marked the project there for "
                    f"deletion on {marked:%Y-%m-%d}, and holds the name until it removes it",
                )
            return existing
        namespace = self._ensure_group_sync(group)
        log.info("creating GitLab project %s", path)
        try:
            return self._gl.projects.create(
                {
                    "name": name,
                    "path": name,
                    "namespace_id": namespace.id,
                    "description": description,
                    "visibility": "private",
                }
            )
        except gitlab.exceptions.GitlabCreateError as exc:
            # someone (another replica, a retried step) created it in between
            again = self._find_project_sync(path) if exc.response_code == 400 else None
            if again is None:
                raise
            return again

    async def ensure_project(self, *, group: str, name: str, description: str) -> Project:
        project = await self._call(
            f"creating project {group}/{name}",
            lambda: self._ensure_project_sync(group, name, description),
        )
        return self._project(project)

    def _delete_project_sync(self, path: str, project_id: int | None) -> ProjectRemoval:
        found = self._get_sync(project_id if project_id is not None else path)
        if found is None:
            return ProjectRemoval("absent", path)
        at = str(found.path_with_namespace)
        if project_id is None and at.lower() != path.lower() and not _marked_from(found, path):
            return ProjectRemoval("absent", path)  # the path leads to someone else's project
        if _marked_on(found) is None:
            log.info("deleting GitLab project %s", at)
            self._gl.projects.delete(found.id)
            found = self._get_sync(found.id)
            if found is None:  # no delayed deletion here: gone at once
                return ProjectRemoval("removed", path)
            at = str(found.path_with_namespace)
        marked = _marked_on(found)
        try:
            self._gl.projects.delete(found.id, permanently_remove="true", full_path=at)
        except gitlab.exceptions.GitlabDeleteError as exc:
            if exc.response_code != 400:
                raise
            log.info("GitLab keeps %s marked for deletion: %s", at, _gitlab_message(exc))
            return ProjectRemoval(
                "scheduled",
                at,
                marked_on=marked,
                name_free=at.lower() != path.lower(),
                reason=_gitlab_message(exc),
            )
        log.info("removed GitLab project %s for good", at)
        return ProjectRemoval("removed", path, marked_on=marked)

    async def delete_project(
        self, path_with_namespace: str, *, project_id: int | None = None
    ) -> ProjectRemoval:
        return await self._call(
            f"deleting project {path_with_namespace}",
            lambda: self._delete_project_sync(path_with_namespace, project_id),
        )

    # -- commits --------------------------------------------------------------

    @staticmethod
    def _file_at(project: Any, file_path: str, ref: str) -> bytes | None:
        """The file's content at `ref`, or None if it is not there."""
        try:
            found = project.files.get(file_path, ref=ref)
        except gitlab.exceptions.GitlabGetError as exc:
            if exc.response_code == 404:
                return None
            raise
        return base64.b64decode(found.content)

    def _commit_files_sync(
        self, project_id: int, branch: str, message: str, files: dict[str, str]
    ) -> str | None:
        project = self._gl.projects.get(project_id, lazy=True)
        data: dict[str, Any] = {"branch": branch, "commit_message": message}
        try:
            project.branches.get(branch)
            base: str | None = branch
        except gitlab.exceptions.GitlabGetError as exc:
            if exc.response_code != 404:
                raise
            # a new branch starts from the default one; an empty repository has none yet,
            # and its first commit creates `branch`
            details = self._gl.projects.get(project_id)
            base = None if details.empty_repo else details.default_branch
            if base is not None:
                data["start_branch"] = base
        actions = []
        for file_path, content in sorted(files.items()):
            current = self._file_at(project, file_path, base) if base is not None else None
            if current == content.encode():
                continue
            kind = "create" if current is None else "update"
            actions.append({"action": kind, "file_path": file_path, "content": content})
        if not actions:
            return None
        commit = project.commits.create({**data, "actions": actions})
        log.info("committed %d file(s) to %s@%s", len(actions), project_id, branch)
        return str(commit.id)

    async def commit_files(
        self, project_id: int, *, branch: str, message: str, files: dict[str, str]
    ) -> str | None:
        return await self._call(
            f"committing {len(files)} file(s) to project {project_id}",
            lambda: self._commit_files_sync(project_id, branch, message, files),
        )

    # -- CI/CD variables ------------------------------------------------------

    def _ensure_variables_sync(self, project_id: int, variables: list[CiVariable]) -> int:
        project = self._gl.projects.get(project_id, lazy=True)
        existing = {(v.key, v.environment_scope): v for v in project.variables.list(get_all=True)}
        changed = 0
        for wanted in variables:
            fields = {
                "value": wanted.value,
                "masked": wanted.masked,
                "protected": wanted.protected,
            }
            current = existing.get((wanted.key, wanted.environment_scope))
            if current is None:
                project.variables.create(
                    {"key": wanted.key, "environment_scope": wanted.environment_scope, **fields}
                )
            elif any(getattr(current, name, None) != value for name, value in fields.items()):
                # the filter picks this scope's variable when the key has several scopes
                project.variables.update(
                    wanted.key,
                    {**fields, "filter": {"environment_scope": wanted.environment_scope}},
                )
            else:
                continue
            changed += 1
        return changed

    async def ensure_variables(self, project_id: int, variables: list[CiVariable]) -> int:
        keys = ", ".join(sorted({v.key for v in variables}))
        return await self._call(
            f"setting CI/CD variables {keys} of project {project_id}",
            lambda: self._ensure_variables_sync(project_id, variables),
        )

    # -- protected branches ---------------------------------------------------

    def _protect_branch_sync(self, project_id: int, branch: str) -> bool:
        project = self._gl.projects.get(project_id, lazy=True)
        try:
            project.protectedbranches.get(branch)
            return False
        except gitlab.exceptions.GitlabGetError as exc:
            if exc.response_code != 404:
                raise
        try:
            project.protectedbranches.create(
                {"name": branch, "push_access_level": MAINTAINER, "merge_access_level": MAINTAINER}
            )
        except gitlab.exceptions.GitlabCreateError as exc:
            if exc.response_code == 409:  # protected in between
                return False
            raise
        return True

    async def protect_branch(self, project_id: int, branch: str) -> bool:
        return await self._call(
            f"protecting branch {branch} of project {project_id}",
            lambda: self._protect_branch_sync(project_id, branch),
        )

    # -- pipelines ------------------------------------------------------------

    def _pipelines_sync(self, project_id: int, ref: str | None) -> list[Pipeline]:
        project = self._gl.projects.get(project_id, lazy=True)
        filters: dict[str, Any] = {"order_by": "id", "sort": "desc", "per_page": 20}
        if ref is not None:
            filters["ref"] = ref
        found = project.pipelines.list(get_all=False, **filters)
        pipelines = [
            Pipeline(id=int(p.id), status=str(p.status), ref=str(p.ref), web_url=str(p.web_url))
            for p in found
        ]
        return sorted(pipelines, key=lambda p: p.id, reverse=True)

    async def pipelines(self, project_id: int, *, ref: str | None = None) -> list[Pipeline]:
        return await self._call(
            f"listing pipelines of project {project_id}",
            lambda: self._pipelines_sync(project_id, ref),
        )

    # -- merge requests -------------------------------------------------------

    def _note_sync(self, project_id: int, iid: int, body: str) -> int:
        # POST /projects/:id/merge_requests/:merge_request_iid/notes (python-gitlab's
        # ProjectMergeRequestNoteManager; docs.gitlab.com api/notes.md)
        project = self._gl.projects.get(project_id, lazy=True)
        merge_request = project.mergerequests.get(iid, lazy=True)
        note = merge_request.notes.create({"body": body})
        return int(note.id)

    async def note_merge_request(self, project_id: int, iid: int, body: str) -> int:
        return await self._call(
            f"commenting on merge request !{iid} of project {project_id}",
            lambda: self._note_sync(project_id, iid, body),
        )


def _marked_on(project: Any) -> date | None:
    """`marked_for_deletion_on` (YYYY-MM-DD), where GitLab says it (delayed deletion)."""
    value = getattr(project, "marked_for_deletion_on", None)
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


def _marked_from(project: Any, path: str) -> bool:
    """Whether `project` is the one that was at `path`, renamed when GitLab marked it."""
    at = str(project.path_with_namespace).lower()
    return _marked_on(project) is not None and any(
        at == (path + suffix.format(id=project.id)).lower() for suffix in MARKED_SUFFIXES
    )


def _is_code_host(host: GitLabCodeHost) -> CodeHost:
    """Checked by mypy: GitLabCodeHost implements the CodeHost Protocol."""
    return host
