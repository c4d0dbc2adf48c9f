"""GitLab: projects, CI/CD variables, pipelines (the `CodeHost` port).

See kernel.ports.systems for what every port promises (async, idempotent, errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol


@dataclass(frozen=True)
class Project:
    """A GitLab project as the golden path needs it."""

    id: int
    path_with_namespace: str
    web_url: str
    default_branch: str
    marked_for_deletion_on: date | None = None
    """The day GitLab marked it for deletion (delayed deletion), if it did."""


@dataclass(frozen=True)
class ProjectRemoval:
    """What `CodeHost.delete_project` did."""

    outcome: Literal["absent", "removed", "scheduled"]
    """`absent`: nothing (left) to delete; `removed`: gone for good; `scheduled`: GitLab
    keeps it, marked for deletion, until its retention period ends."""
    path: str
    """Where the project is now (a marked project is renamed) or was."""
    marked_on: date | None = None
    name_free: bool = True
    """Whether a new project may take the old path now (GitLab renames what it marks)."""
    reason: str | None = None
    """GitLab's words for why it would not remove the project for good."""


@dataclass(frozen=True)
class CiVariable:
    """A CI/CD variable; `environment_scope` "*" means every environment."""

    key: str
    value: str
    environment_scope: str = "*"
    masked: bool = False
    protected: bool = False


@dataclass(frozen=True)
class Pipeline:
    id: int
    status: str
    ref: str
    web_url: str


class CodeHost(Protocol):
    """GitLab: projects, commits, CI/CD variables, protected branches, pipelines."""

    async def find_project(self, path_with_namespace: str) -> Project | None:
        """The project at exactly this path. None also when the path only redirects to a
        project renamed away from it (as GitLab renames one it marks for deletion): a new
        project may take that path."""
        ...

    async def ensure_project(self, *, group: str, name: str, description: str) -> Project:
        """The project `group/name`, created (with its group) if missing."""
        ...

    async def commit_files(
        self, project_id: int, *, branch: str, message: str, files: dict[str, str]
    ) -> str | None:
        """Commit every file in one commit (create or update); None if all were already
        identical, so a re-run after a crash commits nothing twice. Returns the commit id."""
        ...

    async def ensure_variables(self, project_id: int, variables: list[CiVariable]) -> int:
        """Create or update each (key, environment_scope); returns how many changed."""
        ...

    async def protect_branch(self, project_id: int, branch: str) -> bool:
        """Protect `branch` (maintainers push and merge); True if it was not yet."""
        ...

    async def pipelines(self, project_id: int, *, ref: str | None = None) -> list[Pipeline]:
        """Newest first."""
        ...

    async def note_merge_request(self, project_id: int, iid: int, body: str) -> int:
        """Add a comment (note) to a merge request; the note's id."""
        ...

    async def delete_project(
        self, path_with_namespace: str, *, project_id: int | None = None
    ) -> ProjectRemoval:
        """Delete the project for good where GitLab allows it: where deletion is delayed (every
        GitLab since 18.0, Premium and GitLab.com before) the first DELETE only marks it, and a
        second one with `permanently_remove` and its (renamed) `full_path` removes it; where
        the instance forbids that (GitLab.com), it stays marked until its retention period
        ends. `project_id`, when known, names the very project (a new one may have taken the
        path since it was marked). Tolerates what is gone or already marked."""
        ...
