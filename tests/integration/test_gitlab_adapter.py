"""The GitLab adapter against the GitLab stand-in, over HTTP, through python-gitlab.

The stand-in starts with the groups `platform` and `platform/payments`; what the adapter
did is read back from the stand-in's own records (projects, files, commits, variables,
protected branches) and from the requests it received.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest

from adapters.gitlab import GitLabCodeHost
from kernel.errors import AdapterError
from kernel.ports.systems import CiVariable, Pipeline, Project, ProjectRemoval
from sandbox.standins.gitlab import GitLabStandIn

TOKEN = "glpat-adapter-test-token"
GROUPS = [(10, "platform"), (11, "platform/payments")]
PATH = "platform/payments/checkout"


@pytest.fixture
async def standin() -> AsyncIterator[GitLabStandIn]:
    async with GitLabStandIn(token=TOKEN, groups=GROUPS) as server:
        yield server


@pytest.fixture
def host(standin: GitLabStandIn) -> Iterator[GitLabCodeHost]:
    code_host = GitLabCodeHost(standin.url, TOKEN, timeout=5)
    yield code_host
    code_host.close()


async def new_project(host: GitLabCodeHost) -> Project:
    return await host.ensure_project(
        group="platform/payments", name="checkout", description="Checkout API"
    )


def calls(standin: GitLabStandIn, method: str, path: str) -> int:
    """How many `method` requests went to `path` (URL-encoded, under /api/v4)."""
    return sum(r.method == method and r.path == f"/api/v4{path}" for r in standin.requests)


# -- projects ------------------------------------------------------------------------


async def test_ensure_project_creates_it_once(host: GitLabCodeHost, standin: GitLabStandIn) -> None:
    assert await host.find_project(PATH) is None

    project = await new_project(host)

    assert project.path_with_namespace == PATH
    assert project.default_branch == "main"
    assert project.web_url == f"{standin.url}/{PATH}"
    stored = standin.project(PATH)
    assert (stored["id"], stored["description"]) == (project.id, "Checkout API")
    assert stored["namespace"]["id"] == 11

    assert await new_project(host) == project
    assert await host.find_project(PATH) == project
    assert calls(standin, "POST", "/projects") == 1


async def test_ensure_project_creates_missing_groups(
    host: GitLabCodeHost, standin: GitLabStandIn
) -> None:
    project = await host.ensure_project(group="data/ml", name="ranker", description="")

    assert project.path_with_namespace == "data/ml/ranker"
    assert standin.project("data/ml/ranker")["namespace"]["full_path"] == "data/ml"
    assert calls(standin, "POST", "/groups") == 2  # data, then data/ml inside it

    await host.ensure_project(group="data/ml", name="features", description="")
    assert calls(standin, "POST", "/groups") == 2


async def test_delete_marks_then_removes_for_good_and_tolerates_what_is_gone(
    host: GitLabCodeHost, standin: GitLabStandIn
) -> None:
    project = await new_project(host)

    removed = await host.delete_project(PATH)

    assert removed == ProjectRemoval("removed", PATH, marked_on=datetime.now(UTC).date())
    with pytest.raises(KeyError):
        standin.project(PATH)
    deletes = [r for r in standin.requests if r.method == "DELETE"]
    assert [(r.path, r.query, r.status) for r in deletes] == [
        (f"/api/v4/projects/{project.id}", "", 202),  # marked (and renamed)
        (  # then removed, naming the renamed project as GitLab asks
            f"/api/v4/projects/{project.id}",
            "permanently_remove=true&full_path="
            f"platform%2Fpayments%2Fcheckout-deletion_scheduled-{project.id}",
            202,
        ),
    ]
    assert await host.delete_project(PATH) == ProjectRemoval("absent", PATH)
    assert await host.find_project(PATH) is None


async def test_where_gitlab_keeps_it_the_project_stays_marked_and_the_name_is_free() -> None:
    async with GitLabStandIn(token=TOKEN, groups=GROUPS, immediate_deletion_allowed=False) as saas:
        host = GitLabCodeHost(saas.url, TOKEN, timeout=5)
        try:
            old = await new_project(host)
            renamed = f"{PATH}-deletion_scheduled-{old.id}"
            expected = ProjectRemoval(
                "scheduled",
                renamed,
                marked_on=datetime.now(UTC).date(),
                name_free=True,
                reason="`permanently_remove` option is not permitted on this instance.",
            )
            assert await host.delete_project(PATH) == expected
            assert await host.delete_project(PATH) == expected  # again: no "already marked"
            # GET by the old path follows GitLab's redirect to the marked project, which
            # must not count as "there" nor be adopted: the path is free for a new one
            assert saas.project(PATH)["id"] == old.id
            assert await host.find_project(PATH) is None
            new = await new_project(host)
            assert new.id != old.id and new.path_with_namespace == PATH
            # the old one, named by its id, is still the only one Clean up touches
            assert await host.delete_project(PATH, project_id=old.id) == expected
            assert saas.project(PATH)["id"] == new.id
        finally:
            host.close()


async def test_without_delayed_deletion_it_is_removed_at_once() -> None:
    async with GitLabStandIn(token=TOKEN, groups=GROUPS, delayed_deletion=False) as free:
        host = GitLabCodeHost(free.url, TOKEN, timeout=5)
        try:
            await new_project(host)
            assert await host.delete_project(PATH) == ProjectRemoval("removed", PATH)
            assert [r.method for r in free.requests].count("DELETE") == 1
        finally:
            host.close()


# -- commits -------------------------------------------------------------------------


async def test_commit_files_once_then_only_what_changed(
    host: GitLabCodeHost, standin: GitLabStandIn
) -> None:
    project = await new_project(host)
    files = {"README.md": "# checkout\n", "src/app.py": "print('hi')\n"}

    first = await host.commit_files(project.id, branch="main", message="Skeleton", files=files)

    assert first is not None
    assert standin.files(PATH) == files
    assert [c["id"] for c in standin.commits(PATH)] == [first]

    # a re-run (after a crash, say) commits nothing
    again = await host.commit_files(project.id, branch="main", message="Skeleton", files=files)
    assert again is None
    assert len(standin.commits(PATH)) == 1

    changed = {**files, "src/app.py": "print('hello')\n", "Dockerfile": "FROM python\n"}
    second = await host.commit_files(project.id, branch="main", message="Update", files=changed)

    assert second is not None and second != first
    assert standin.files(PATH) == changed
    history = standin.commits(PATH)
    assert [c["title"] for c in history] == ["Update", "Skeleton"]
    assert history[0]["stats"]["additions"] == 2  # the new Dockerfile and the changed line


async def test_commit_to_a_new_branch_starts_from_the_default_one(
    host: GitLabCodeHost, standin: GitLabStandIn
) -> None:
    project = await new_project(host)
    await host.commit_files(project.id, branch="main", message="one", files={"a.txt": "a\n"})

    sha = await host.commit_files(
        project.id, branch="feature", message="two", files={"a.txt": "a\n", "b.txt": "b\n"}
    )

    assert sha is not None
    assert standin.files(PATH, "feature") == {"a.txt": "a\n", "b.txt": "b\n"}
    assert standin.files(PATH, "main") == {"a.txt": "a\n"}
    assert [c["title"] for c in standin.commits(PATH, "feature")] == ["two", "one"]


async def test_a_failed_commit_is_retried_without_duplicates(
    host: GitLabCodeHost, standin: GitLabStandIn
) -> None:
    project = await new_project(host)
    files = {"README.md": "# checkout\n"}
    standin.fail_next("POST", f"/projects/{project.id}/repository/commits", 500)

    with pytest.raises(AdapterError) as caught:
        await host.commit_files(project.id, branch="main", message="Skeleton", files=files)

    assert caught.value.system == "GitLab"
    assert caught.value.status == 500
    assert caught.value.message == (
        f"committing 1 file(s) to project {project.id} failed: 500 Internal Server Error (HTTP 500)"
    )
    assert standin.files(PATH) == {}
    assert await host.commit_files(project.id, branch="main", message="S", files=files)
    assert await host.commit_files(project.id, branch="main", message="S", files=files) is None
    assert len(standin.commits(PATH)) == 1


# -- variables, protected branches, pipelines ----------------------------------------


async def test_ensure_variables_per_environment_scope(
    host: GitLabCodeHost, standin: GitLabStandIn
) -> None:
    project = await new_project(host)
    wanted = [
        CiVariable("KUBE_NAMESPACE", "checkout-staging", environment_scope="staging"),
        CiVariable("KUBE_NAMESPACE", "checkout-prod", environment_scope="prod"),
        CiVariable("SERVICE", "checkout"),
    ]

    assert await host.ensure_variables(project.id, wanted) == 3
    assert await host.ensure_variables(project.id, wanted) == 0

    changed = [
        CiVariable("KUBE_NAMESPACE", "checkout-production", environment_scope="prod"),
        CiVariable("SERVICE", "checkout", protected=True),
    ]
    assert await host.ensure_variables(project.id, changed) == 2

    stored = {
        (v["key"], v["environment_scope"]): (v["value"], v["protected"])
        for v in standin.variables(PATH)
    }
    assert stored == {
        ("KUBE_NAMESPACE", "staging"): ("checkout-staging", False),
        ("KUBE_NAMESPACE", "prod"): ("checkout-production", False),
        ("SERVICE", "*"): ("checkout", True),
    }


async def test_a_refused_variable_says_why(host: GitLabCodeHost) -> None:
    project = await new_project(host)

    with pytest.raises(AdapterError) as caught:
        await host.ensure_variables(project.id, [CiVariable("TOKEN", "short", masked=True)])

    assert caught.value.status == 400
    assert caught.value.message == (
        f"setting CI/CD variables TOKEN of project {project.id} failed: value is invalid (HTTP 400)"
    )


async def test_protect_branch_once(host: GitLabCodeHost, standin: GitLabStandIn) -> None:
    project = await new_project(host)

    assert await host.protect_branch(project.id, "main") is True
    assert await host.protect_branch(project.id, "main") is False

    [protected] = standin.protected_branches(PATH)
    assert protected["name"] == "main"
    assert protected["push_access_levels"][0]["access_level"] == 40
    assert protected["merge_access_levels"][0]["access_level"] == 40


async def test_pipelines_newest_first_and_by_ref(
    host: GitLabCodeHost, standin: GitLabStandIn
) -> None:
    project = await new_project(host)
    assert await host.pipelines(project.id) == []
    ci = {".gitlab-ci.yml": "test:\n  script: [true]\n"}
    await host.commit_files(project.id, branch="main", message="ci", files=ci)
    await host.commit_files(project.id, branch="main", message="more", files={**ci, "a.txt": "a\n"})
    await host.commit_files(project.id, branch="feature", message="f", files={**ci, "b.txt": "b\n"})
    first = standin.pipelines(PATH)[-1]["id"]
    standin.set_pipeline_status(PATH, first, "success")

    every = await host.pipelines(project.id)
    on_main = await host.pipelines(project.id, ref="main")

    assert [(p.ref, p.status) for p in every] == [
        ("feature", "pending"),
        ("main", "pending"),
        ("main", "success"),
    ]
    assert every[0].id > every[1].id > every[2].id
    assert on_main == every[1:]
    assert on_main[1] == Pipeline(
        id=first,
        status="success",
        ref="main",
        web_url=f"{standin.url}/{PATH}/-/pipelines/{first}",
    )


# -- access ----------------------------------------------------------------------------


async def test_a_refused_token_is_named_but_never_shown(standin: GitLabStandIn) -> None:
    wrong = GitLabCodeHost(standin.url, "glpat-wrong-secret")
    try:
        with pytest.raises(AdapterError) as caught:
            await wrong.find_project(PATH)
    finally:
        wrong.close()

    assert caught.value.status == 401
    assert caught.value.message == (
        f"looking up project {PATH} failed: the token was refused (check GITLAB_TOKEN)"
    )
    assert "glpat-wrong-secret" not in str(caught.value)
    assert "glpat-wrong-secret" not in repr(wrong)


async def test_an_unreachable_gitlab(standin: GitLabStandIn) -> None:
    url = standin.url
    await standin.stop()
    gone = GitLabCodeHost(url, TOKEN, timeout=2)
    try:
        with pytest.raises(AdapterError) as caught:
            await gone.protect_branch(1, "main")
    finally:
        gone.close()

    assert caught.value.message == (
        f"protecting branch main of project 1 failed: cannot reach {url} (ConnectionError)"
    )
