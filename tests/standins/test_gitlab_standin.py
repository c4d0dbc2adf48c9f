"""The GitLab stand-in behaves as GitLab documents, seen through the real python-gitlab.

python-gitlab is blocking, so every call runs in ``asyncio.to_thread`` while the
stand-in serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import gitlab
import pytest
import requests
from gitlab.v4.objects import Project

from sandbox.standins.gitlab import GitLabStandIn

TOKEN = "glpat-standin-token"
GROUPS = [(10, "platform"), (11, "platform/payments")]

T = TypeVar("T")


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture
async def standin() -> AsyncIterator[GitLabStandIn]:
    async with GitLabStandIn(token=TOKEN, groups=GROUPS) as server:
        yield server


@pytest.fixture
def gl(standin: GitLabStandIn) -> gitlab.Gitlab:
    return gitlab.Gitlab(standin.url, private_token=TOKEN)


async def new_project(gl: gitlab.Gitlab, path: str = "checkout", **extra: Any) -> Project:
    group = await call(gl.groups.get, "platform/payments")
    data = {"name": path, "path": path, "namespace_id": group.id, **extra}
    project: Project = await call(gl.projects.create, data)
    return project


async def test_auth_wrong_or_missing_token_is_401(standin: GitLabStandIn) -> None:
    bad = gitlab.Gitlab(standin.url, private_token="nope")
    with pytest.raises(gitlab.GitlabAuthenticationError) as caught:
        await call(bad.auth)
    assert caught.value.response_code == 401
    anonymous = await call(requests.get, f"{standin.url}/api/v4/projects/1", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json() == {"message": "401 Unauthorized"}


async def test_auth_with_private_token_and_bearer(standin: GitLabStandIn) -> None:
    gl = gitlab.Gitlab(standin.url, private_token=TOKEN)
    await call(gl.auth)
    assert gl.user is not None
    assert gl.user.username == "platform-bot"
    oauth = gitlab.Gitlab(standin.url, oauth_token=TOKEN)
    await call(oauth.auth)
    assert [(r.method, r.path, r.status) for r in standin.requests] == [
        ("GET", "/api/v4/user", 200),
        ("GET", "/api/v4/user", 200),
    ]


async def test_groups_by_id_path_and_search(gl: gitlab.Gitlab) -> None:
    by_path = await call(gl.groups.get, "platform/payments")
    assert (by_path.id, by_path.full_path, by_path.parent_id) == (11, "platform/payments", 10)
    by_id = await call(gl.groups.get, 10)
    assert by_id.full_path == "platform"
    found = await call(gl.groups.list, search="pay", get_all=True)
    assert [g.full_path for g in found] == ["platform/payments"]
    with pytest.raises(gitlab.GitlabGetError) as caught:
        await call(gl.groups.get, "nowhere")
    assert caught.value.response_code == 404
    assert caught.value.error_message == "404 Group Not Found"


async def test_create_groups_and_subgroups(gl: gitlab.Gitlab) -> None:
    top = await call(gl.groups.create, {"name": "search", "path": "search"})
    assert (top.full_path, top.parent_id) == ("search", None)
    sub = await call(gl.groups.create, {"name": "infra", "path": "infra", "parent_id": top.id})
    assert (sub.full_path, sub.parent_id) == ("search/infra", top.id)
    assert (await call(gl.groups.get, "search/infra")).id == sub.id

    with pytest.raises(gitlab.GitlabCreateError) as taken:
        await call(gl.groups.create, {"name": "search", "path": "search"})
    assert taken.value.response_code == 400
    assert taken.value.error_message == 'Failed to save group {:path=>["has already been taken"]}'
    with pytest.raises(gitlab.GitlabCreateError) as orphan:
        await call(gl.groups.create, {"name": "x", "path": "x", "parent_id": 999})
    assert orphan.value.response_code == 404
    assert orphan.value.error_message == "404 Group Not Found"


async def test_create_project_then_duplicate_is_400(
    gl: gitlab.Gitlab, standin: GitLabStandIn
) -> None:
    project = await new_project(gl, initialize_with_readme=True)
    assert project.path_with_namespace == "platform/payments/checkout"
    assert project.namespace["id"] == 11
    assert project.default_branch == "main"
    assert standin.project("platform/payments/checkout")["id"] == project.id

    with pytest.raises(gitlab.GitlabCreateError) as caught:
        await new_project(gl)
    assert caught.value.response_code == 400
    message: object = caught.value.error_message  # GitLab sends a dict here
    assert message == {
        "name": ["has already been taken"],
        "path": ["has already been taken"],
    }

    same = await call(gl.projects.get, "platform/payments/checkout")
    assert same.id == project.id
    assert (await call(gl.projects.get, project.id)).name == "checkout"
    with pytest.raises(gitlab.GitlabGetError) as missing:
        await call(gl.projects.get, "platform/payments/nope")
    assert missing.value.response_code == 404
    assert missing.value.error_message == "404 Project Not Found"


async def test_commit_several_files_and_read_them_back(
    gl: gitlab.Gitlab, standin: GitLabStandIn
) -> None:
    project = await new_project(gl, initialize_with_readme=True)
    ci = "stages: [build]\n"
    commit = await call(
        project.commits.create,
        {
            "branch": "main",
            "commit_message": "Scaffold checkout\n\nfrom the golden path",
            "actions": [
                {"action": "create", "file_path": ".gitlab-ci.yml", "content": ci},
                {
                    "action": "create",
                    "file_path": "deploy/values.yaml",
                    "content": base64.b64encode(b"replicas: 2\n").decode(),
                    "encoding": "base64",
                },
                {"action": "update", "file_path": "README.md", "content": "# checkout\nhi\n"},
            ],
        },
    )
    assert commit.title == "Scaffold checkout"
    assert standin.files("platform/payments/checkout") == {
        ".gitlab-ci.yml": ci,
        "README.md": "# checkout\nhi\n",
        "deploy/values.yaml": "replicas: 2\n",
    }
    values = await call(project.files.get, file_path="deploy/values.yaml", ref="main")
    assert values.decode() == b"replicas: 2\n"
    assert values.last_commit_id == commit.id

    history = await call(project.commits.list, get_all=True)
    assert [c.title for c in history] == ["Scaffold checkout", "Initial commit"]
    assert history[0].parent_ids == [history[1].id]

    with pytest.raises(gitlab.GitlabCreateError) as caught:
        await call(
            project.commits.create,
            {
                "branch": "main",
                "commit_message": "again",
                "actions": [{"action": "create", "file_path": ".gitlab-ci.yml", "content": ""}],
            },
        )
    assert caught.value.response_code == 400
    assert caught.value.error_message == "A file with this name already exists"
    assert len(standin.commits("platform/payments/checkout")) == 2  # nothing half-done

    with pytest.raises(gitlab.GitlabGetError) as missing:
        await call(project.files.get, file_path="nope.txt", ref="main")
    assert missing.value.response_code == 404


async def test_pipelines_follow_commits_with_ci_config(
    gl: gitlab.Gitlab, standin: GitLabStandIn
) -> None:
    project = await new_project(gl)
    assert await call(project.pipelines.list, get_all=True) == []
    for n in range(2):
        await call(
            project.commits.create,
            {
                "branch": "main",
                "commit_message": f"change {n}",
                "actions": [
                    {
                        "action": "create" if n == 0 else "update",
                        "file_path": ".gitlab-ci.yml",
                        "content": f"# {n}\n",
                    }
                ],
            },
        )
    pipelines = await call(project.pipelines.list, get_all=True)
    head = standin.commits("platform/payments/checkout")[0]["id"]
    assert [p.status for p in pipelines] == ["pending", "pending"]
    assert pipelines[0].sha == head  # newest first
    assert pipelines[0].id > pipelines[1].id
    standin.set_pipeline_status("platform/payments/checkout", pipelines[0].id, "success")
    assert (await call(project.pipelines.get, pipelines[0].id)).status == "success"


async def test_variables_by_environment_scope(gl: gitlab.Gitlab, standin: GitLabStandIn) -> None:
    project = await new_project(gl)
    for scope, value in (("staging", "s3cr3t-staging"), ("production", "s3cr3t-prod")):
        await call(
            project.variables.create,
            {"key": "DB_PASSWORD", "value": value, "environment_scope": scope, "masked": True},
        )
    with pytest.raises(gitlab.GitlabCreateError) as caught:
        await call(
            project.variables.create,
            {"key": "DB_PASSWORD", "value": "x" * 8, "environment_scope": "staging"},
        )
    assert caught.value.response_code == 400
    message: object = caught.value.error_message
    assert message == {"key": ["(DB_PASSWORD) has already been taken"]}

    listed = await call(project.variables.list, get_all=True)
    assert sorted(v.environment_scope for v in listed) == ["production", "staging"]
    prod = await call(
        project.variables.get, "DB_PASSWORD", filter={"environment_scope": "production"}
    )
    assert prod.value == "s3cr3t-prod"
    with pytest.raises(gitlab.GitlabGetError) as ambiguous:
        await call(project.variables.get, "DB_PASSWORD")
    assert ambiguous.value.response_code == 409

    await call(
        project.variables.update,
        "DB_PASSWORD",
        {"value": "rotated-prod"},
        filter={"environment_scope": "production"},
    )
    await call(project.variables.delete, "DB_PASSWORD", filter={"environment_scope": "staging"})
    assert [
        (v["environment_scope"], v["value"], v["masked"])
        for v in standin.variables("platform/payments/checkout")
    ] == [("production", "rotated-prod", True)]


async def test_protected_branches(gl: gitlab.Gitlab, standin: GitLabStandIn) -> None:
    project = await new_project(gl, initialize_with_readme=True)
    protected = await call(
        project.protectedbranches.create,
        {"name": "main", "push_access_level": 0, "merge_access_level": 40},
    )
    assert protected.push_access_levels[0]["access_level"] == 0
    with pytest.raises(gitlab.GitlabCreateError) as caught:
        await call(project.protectedbranches.create, {"name": "main"})
    assert caught.value.response_code == 409
    assert caught.value.error_message == "Protected branch 'main' already exists"
    listed = await call(project.protectedbranches.list, get_all=True)
    assert [p.name for p in listed] == ["main"]
    await call(project.protectedbranches.delete, "main")
    assert standin.protected_branches("platform/payments/checkout") == []


async def test_fail_next_gives_500_once(gl: gitlab.Gitlab, standin: GitLabStandIn) -> None:
    project = await new_project(gl)
    standin.fail_next("GET", f"/projects/{project.id}", times=2)
    with pytest.raises(gitlab.GitlabHttpError) as raw:
        await call(gl.http_get, f"/projects/{project.id}")
    assert raw.value.response_code == 500
    assert raw.value.error_message == "500 Internal Server Error"
    # python-gitlab's managers wrap it in the operation's error
    with pytest.raises(gitlab.GitlabGetError) as wrapped:
        await call(gl.projects.get, project.id)
    assert wrapped.value.response_code == 500
    assert (await call(gl.projects.get, project.id)).id == project.id
    assert [r.status for r in standin.requests[-3:]] == [500, 500, 200]


async def delete_error(gl: gitlab.Gitlab, ref: int | str, **params: Any) -> tuple[int, str]:
    """The status and GitLab's message of a DELETE /projects/:id that fails."""
    with pytest.raises(gitlab.GitlabDeleteError) as caught:
        await call(gl.projects.delete, ref, **params)
    assert caught.value.response_code is not None
    return caught.value.response_code, str(caught.value.error_message)


async def test_delete_only_marks_the_project_renames_it_and_leaves_a_redirect(
    gl: gitlab.Gitlab, standin: GitLabStandIn
) -> None:
    project = await new_project(gl)
    deleted = await call(
        requests.delete,
        f"{standin.url}/api/v4/projects/{project.id}",
        headers={"PRIVATE-TOKEN": TOKEN},
        timeout=5,
    )
    assert (deleted.status_code, deleted.json()) == (202, {"message": "202 Accepted"})

    marked = await call(gl.projects.get, project.id)
    renamed = f"checkout-deletion_scheduled-{project.id}"
    assert (marked.path, marked.name) == (renamed, renamed)
    assert marked.path_with_namespace == f"platform/payments/{renamed}"
    assert marked.archived is True
    today = datetime.now(UTC).date().isoformat()
    assert marked.marked_for_deletion_on == marked.marked_for_deletion_at == today
    # the old path is a redirect: API lookups by path still find the marked project
    assert (await call(gl.projects.get, "platform/payments/checkout")).id == project.id
    assert await delete_error(gl, project.id) == (
        400,
        "Project has been already marked for deletion",
    )


async def test_permanent_removal_needs_the_mark_and_the_renamed_full_path(
    gl: gitlab.Gitlab, standin: GitLabStandIn
) -> None:
    project = await new_project(gl)
    assert await delete_error(
        gl, project.id, permanently_remove=True, full_path="platform/payments/checkout"
    ) == (400, "Project must be marked for deletion first.")
    await call(gl.projects.delete, project.id)
    assert await delete_error(
        gl, project.id, permanently_remove=True, full_path="platform/payments/checkout"
    ) == (400, "`full_path` is incorrect. You must enter the complete path for the project.")
    renamed = (await call(gl.projects.get, project.id)).path_with_namespace
    await call(gl.projects.delete, project.id, permanently_remove=True, full_path=renamed)
    for ref in (project.id, renamed, "platform/payments/checkout"):
        with pytest.raises(gitlab.GitlabGetError) as caught:
            await call(gl.projects.get, ref)
        assert caught.value.response_code == 404
    with pytest.raises(KeyError):
        standin.project("platform/payments/checkout")


async def test_a_new_project_takes_the_path_of_a_marked_one_and_drops_its_redirect(
    gl: gitlab.Gitlab, standin: GitLabStandIn
) -> None:
    old = await new_project(gl)
    await call(gl.projects.delete, old.id)
    new = await new_project(gl)  # the rename freed the path
    assert new.id != old.id
    assert (await call(gl.projects.get, "platform/payments/checkout")).id == new.id
    assert (await call(gl.projects.get, old.id)).marked_for_deletion_on is not None


async def test_where_immediate_deletion_is_not_permitted_the_retention_period_decides() -> None:
    async with GitLabStandIn(
        token=TOKEN, groups=GROUPS, immediate_deletion_allowed=False, deletion_adjourned_period=7
    ) as saas:
        gl = gitlab.Gitlab(saas.url, private_token=TOKEN)
        project = await new_project(gl)
        await call(gl.projects.delete, project.id)
        renamed = (await call(gl.projects.get, project.id)).path_with_namespace
        assert await delete_error(gl, project.id, permanently_remove=True, full_path=renamed) == (
            400,
            "`permanently_remove` option is not permitted on this instance.",
        )
        today = datetime.now(UTC).date()
        assert saas.run_adjourned_deletion(today + timedelta(days=7)) == []
        assert saas.run_adjourned_deletion(today + timedelta(days=8)) == [renamed]
        with pytest.raises(gitlab.GitlabGetError):
            await call(gl.projects.get, project.id)


async def test_without_delayed_deletion_a_delete_removes_at_once() -> None:
    async with GitLabStandIn(token=TOKEN, groups=GROUPS, delayed_deletion=False) as free:
        gl = gitlab.Gitlab(free.url, private_token=TOKEN)
        project = await new_project(gl)
        await call(gl.projects.delete, project.id)
        with pytest.raises(gitlab.GitlabGetError) as caught:
            await call(gl.projects.get, "platform/payments/checkout")
        assert caught.value.response_code == 404
        again = await new_project(gl)  # the path is free again
        assert again.id != project.id


async def test_lists_are_paginated_like_gitlab(gl: gitlab.Gitlab, standin: GitLabStandIn) -> None:
    project = await new_project(gl)
    for n in range(5):
        await call(project.variables.create, {"key": f"VAR_{n}", "value": str(n)})
    page = await call(project.variables.list, per_page=2, page=2)
    assert [v.key for v in page] == ["VAR_2", "VAR_3"]
    everything = await call(project.variables.list, per_page=2, get_all=True)
    assert len(everything) == 5
    response = await call(
        requests.get,
        f"{standin.url}/api/v4/projects/{project.id}/variables?per_page=2",
        headers={"PRIVATE-TOKEN": TOKEN},
        timeout=5,
    )
    assert response.headers["X-Total"] == "5"
    assert response.headers["X-Total-Pages"] == "3"
    assert response.headers["X-Next-Page"] == "2"
    assert "page=2" in response.links["next"]["url"]


async def test_plain_rest_errors(gl: gitlab.Gitlab, standin: GitLabStandIn) -> None:
    project = await new_project(gl)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = f"{standin.url}/api/v4/projects/platform%2Fpayments%2Fcheckout"
    unknown = await call(requests.get, f"{base}/nothing-here", headers=headers, timeout=5)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "404 Not Found"})
    no_ref = await call(
        requests.get, f"{base}/repository/files/README.md", headers=headers, timeout=5
    )
    assert (no_ref.status_code, no_ref.json()) == (400, {"error": "ref is missing"})
    form = await call(
        requests.post,
        f"{base}/protected_branches",
        data={"name": "release/*", "push_access_level": "40"},
        headers=headers,
        timeout=5,
    )
    assert form.status_code == 201
    assert form.json()["name"] == "release/*"
    with pytest.raises(gitlab.GitlabCreateError) as caught:
        await call(
            project.commits.create,
            {
                "branch": "main",
                "commit_message": "nope",
                "actions": [{"action": "update", "file_path": "missing.txt", "content": "x"}],
            },
        )
    assert caught.value.response_code == 400
    assert caught.value.error_message == "A file with this name doesn't exist"
    assert standin.commits("platform/payments/checkout") == []


async def test_merge_request_notes_as_the_notes_api_documents(
    gl: gitlab.Gitlab, standin: GitLabStandIn
) -> None:
    """docs.gitlab.com api/notes.md "Create new merge request note": POST
    /projects/:id/merge_requests/:merge_request_iid/notes with `body`; 201 and the note;
    `body` missing is 400; an unknown merge request is 404 (api/merge_requests.md)."""
    project = await new_project(gl)
    opened = standin.open_merge_request(
        "platform/payments/checkout", source_branch="feature/x", labels=["preview"]
    )
    assert opened["iid"] == 1 and opened["state"] == "opened"
    merge_request = await call(project.mergerequests.get, 1)
    assert merge_request.source_branch == "feature/x" and merge_request.labels == ["preview"]
    note = await call(merge_request.notes.create, {"body": "Preview: https://x.example.com"})
    assert note.body == "Preview: https://x.example.com"
    assert note.noteable_type == "MergeRequest" and note.noteable_iid == 1
    assert note.system is False
    listed = await call(merge_request.notes.list, get_all=True)
    assert [n.id for n in listed] == [note.id]
    assert standin.notes("platform/payments/checkout", 1)[0]["body"].startswith("Preview:")

    path = f"/projects/{project.id}/merge_requests/1/notes"
    with pytest.raises(gitlab.exceptions.GitlabHttpError) as missing:  # python-gitlab checks
        await call(gl.http_post, path, post_data={})  # `body` itself, so go around it
    assert missing.value.response_code == 400
    assert "body is missing" in str(missing.value)
    unknown = project.mergerequests.get(99, lazy=True)
    with pytest.raises(gitlab.exceptions.GitlabCreateError) as absent:
        await call(unknown.notes.create, {"body": "x"})
    assert absent.value.response_code == 404
    merged = standin.set_merge_request("platform/payments/checkout", 1, state="merged")
    assert merged["state"] == "merged"
    assert (await call(project.mergerequests.get, 1)).state == "merged"
