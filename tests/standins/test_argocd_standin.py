"""The Argo CD stand-in answers as Argo CD does (argo-cd's own source, cited in
sandbox/standins/argocd.py next to each behaviour), over plain HTTP as the bot's adapter
and Argo's own UI call it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from sandbox.standins.argocd import APPSET_LABEL, ArgoCDStandIn

TOKEN = "argocd-test-token"
APP = "checkout-prod"
API = f"/api/v1/applications/{APP}"
REPO = "https://gitlab.example.com/payments/checkout-deploy.git"
IMAGE = "registry.example.com/payments/checkout"
A = "a1a1a1a1" + "0" * 32  # 1.0, tag v1.0
B = "b2b2b2b2" + "1" * 32  # 1.1, tag v1.1, main's HEAD
C = "c3c3c3c3" + "2" * 32  # 1.2, tag v1.2, on the release branch only
D = "d4d4d4d4" + "3" * 32  # 1.3, pushed to main by some tests


def images(version: str) -> list[str]:
    return [f"{IMAGE}:{version}"]


async def make(
    *,
    automated: dict[str, bool] | None = None,
    supports_automated_enabled: bool = True,
    application_set: str | None = None,
) -> ArgoCDStandIn:
    standin = ArgoCDStandIn(
        token=TOKEN, sync_seconds=0.05, supports_automated_enabled=supports_automated_enabled
    )
    await standin.start()
    standin.add_commit(REPO, A, images("1.0"), tags=["v1.0"])
    standin.add_commit(REPO, B, images("1.1"), tags=["v1.1"])
    standin.add_commit(REPO, C, images("1.2"), branch="release", tags=["v1.2"])
    standin.add_application(
        APP,
        project="payments",
        repo_url=REPO,
        path="overlays/prod",
        revision=B,
        images=images("1.1"),
        automated=automated,
        history=[(A, images("1.0")), (B, images("1.1"))],
        application_set=application_set,
    )
    await standin.wait_idle(APP)
    return standin


@pytest.fixture
async def argocd() -> AsyncIterator[ArgoCDStandIn]:
    standin = await make()
    try:
        yield standin
    finally:
        await standin.stop()


async def call(
    argocd: ArgoCDStandIn,
    method: str,
    path: str = API,
    *,
    token: str | None = TOKEN,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    """(status, JSON body) of one plain HTTP request to the stand-in."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, argocd.url + path, json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


async def patch(argocd: ArgoCDStandIn, spec: dict[str, Any]) -> tuple[int, Any]:
    body = {"name": APP, "patch": json.dumps({"spec": spec}), "patchType": "merge"}
    return await call(argocd, "PATCH", body=body)


def argo_error(code: int, message: str) -> dict[str, Any]:
    return {"error": message, "code": code, "message": message}


def running(app: dict[str, Any]) -> tuple[int, str]:
    """(id, revision) of the newest history entry: what is deployed."""
    newest = max(app["status"]["history"], key=lambda h: h["id"])
    return newest["id"], newest["revision"]


# -- what runs, and what git says -------------------------------------------------------


async def test_after_a_rollback_sync_revision_stays_at_head_and_history_says_what_runs(
    argocd: ArgoCDStandIn,
) -> None:
    status, _ = await call(argocd, "POST", f"{API}/rollback", body={"id": 0})
    assert status == 200

    app = await argocd.wait_idle(APP)

    assert app["status"]["sync"]["revision"] == B  # git's HEAD, not what runs
    assert app["status"]["sync"]["status"] == "OutOfSync"
    assert app["status"]["operationState"]["syncResult"]["revision"] == A
    assert app["status"]["operationState"]["phase"] == "Succeeded"
    assert running(app) == (2, A)
    assert app["status"]["history"][-1]["initiatedBy"] == {"username": "admin"}
    assert app["status"]["summary"]["images"] == images("1.0")
    assert app["status"]["health"]["status"] == "Healthy"


async def test_synced_means_the_running_images_are_what_head_deploys(
    argocd: ArgoCDStandIn,
) -> None:
    app = argocd.application(APP)
    assert (app["status"]["sync"]["status"], app["status"]["sync"]["revision"]) == ("Synced", B)
    assert app["status"]["sync"]["comparedTo"]["source"]["targetRevision"] == "HEAD"


async def test_operations_are_asynchronous(argocd: ArgoCDStandIn) -> None:
    # each stage long enough to be seen by polling, even on a busy machine
    argocd.pickup_seconds = argocd.sync_seconds = argocd.health_seconds = 0.3
    status, answer = await call(argocd, "POST", f"{API}/sync", body={"revision": "v1.2"})

    assert status == 200
    assert answer["operation"]["sync"]["revision"] == C
    assert "operationState" not in answer["status"]  # the controller has not picked it up
    seen: list[tuple[str, str, bool]] = []
    async with asyncio.timeout(5):
        while not seen or seen[-1] != ("Succeeded", "Healthy", False):
            app = argocd.application(APP)
            state = app["status"].get("operationState", {})
            step = (state.get("phase", ""), app["status"]["health"]["status"], "operation" in app)
            if not seen or seen[-1] != step:
                seen.append(step)
            await asyncio.sleep(0.005)
    assert seen == [
        ("", "Healthy", True),
        ("Running", "Progressing", True),
        ("Succeeded", "Progressing", False),
        ("Succeeded", "Healthy", False),
    ]
    app = argocd.application(APP)
    assert app["status"]["operationState"]["syncResult"]["revision"] == C
    assert running(app) == (2, C)


# -- resolving revisions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "operation", "synced"),
    [
        ("v1.2", C, C),  # a tag: ls-remote gives the full SHA
        ("release", C, C),  # a branch: its tip
        ("refs/tags/v1.0", A, A),
        ("HEAD", B, B),
        ("", B, B),  # no revision: the target revision
        (C, C, C),  # a full SHA as it is
        (C[:7], C[:7], C),  # an abbreviation stays as typed until the controller resolves it
    ],
)
async def test_revisions_resolve_as_ls_remote_and_the_controller_do(
    argocd: ArgoCDStandIn, typed: str, operation: str, synced: str
) -> None:
    status, answer = await call(argocd, "POST", f"{API}/sync", body={"revision": typed})

    assert status == 200
    assert answer["operation"]["sync"]["revision"] == operation
    app = await argocd.wait_idle(APP)
    assert app["status"]["operationState"]["operation"]["sync"]["revision"] == operation
    assert app["status"]["operationState"]["syncResult"]["revision"] == synced
    assert running(app)[1] == synced


async def test_an_unknown_name_is_refused_with_argos_message(argocd: ArgoCDStandIn) -> None:
    status, body = await call(argocd, "POST", f"{API}/sync", body={"revision": "v9.9"})

    assert (status, body) == (
        400,
        argo_error(
            9,
            "error resolving repo revision: rpc error: code = Unknown desc = unable to "
            "resolve 'v9.9' to a commit SHA: revision not found",
        ),
    )
    assert "operation" not in argocd.application(APP)


async def test_an_unknown_abbreviated_sha_is_taken_then_the_operation_errors(
    argocd: ArgoCDStandIn,
) -> None:
    status, _ = await call(argocd, "POST", f"{API}/sync", body={"revision": "deadbee"})
    assert status == 200

    app = await argocd.wait_idle(APP)

    state = app["status"]["operationState"]
    assert state["phase"] == "Error"
    assert state["message"].startswith("ComparisonError: Failed to load target state")
    assert "Failed to checkout revision deadbee" in state["message"]
    assert "syncResult" not in state
    assert running(app) == (1, B)


# -- refusals -------------------------------------------------------------------------------


async def test_auto_sync_refuses_another_revision_and_rollbacks() -> None:
    argocd = await make(automated={"prune": False, "selfHeal": False})
    try:
        status, body = await call(argocd, "POST", f"{API}/sync", body={"revision": "v1.2"})
        assert (status, body) == (
            400,
            argo_error(9, "Cannot sync to v1.2: auto-sync currently set to HEAD"),
        )
        status, body = await call(argocd, "POST", f"{API}/rollback", body={"id": 0})
        assert (status, body) == (
            400,
            argo_error(9, "rollback cannot be initiated when auto-sync is enabled"),
        )
        dry, _ = await call(
            argocd, "POST", f"{API}/sync", body={"revision": "v1.2", "dryRun": True}
        )
        assert dry == 200
    finally:
        await argocd.stop()


async def test_one_operation_at_a_time_and_unknown_history_ids(argocd: ArgoCDStandIn) -> None:
    status, body = await call(argocd, "POST", f"{API}/rollback", body={"id": 42})
    assert (status, body) == (
        400,
        argo_error(3, f"application {APP} does not have deployment with id 42"),
    )
    assert (await call(argocd, "POST", f"{API}/sync", body={"revision": "v1.2"}))[0] == 200
    status, body = await call(argocd, "POST", f"{API}/rollback", body={"id": 0})
    assert (status, body) == (
        400,
        argo_error(
            9,
            "error setting app operation: rpc error: code = FailedPrecondition desc = "
            "another operation is already in progress",
        ),
    )
    await argocd.wait_idle(APP)


async def test_a_failing_sync_is_failed_and_degraded_without_history(
    argocd: ArgoCDStandIn,
) -> None:
    argocd.fail_revision(C)
    await call(argocd, "POST", f"{API}/sync", body={"revision": "v1.2"})

    app = await argocd.wait_idle(APP)

    state = app["status"]["operationState"]
    assert (state["phase"], state["message"]) == (
        "Failed",
        "one or more synchronization tasks completed unsuccessfully",
    )
    assert state["syncResult"]["revision"] == C
    assert app["status"]["health"]["status"] == "Degraded"
    assert running(app) == (1, B)


async def test_dry_run_and_history_limit(argocd: ArgoCDStandIn) -> None:
    await call(argocd, "POST", f"{API}/sync", body={"revision": "v1.2", "dryRun": True})
    dry = await argocd.wait_idle(APP)
    assert dry["status"]["operationState"]["phase"] == "Succeeded"
    assert running(dry) == (1, B) and len(dry["status"]["history"]) == 2

    await patch(argocd, {"revisionHistoryLimit": 2})
    await call(argocd, "POST", f"{API}/sync", body={"revision": "v1.2"})
    app = await argocd.wait_idle(APP)
    assert [(h["id"], h["revision"]) for h in app["status"]["history"]] == [(1, B), (2, C)]


# -- automated sync -------------------------------------------------------------------------


async def test_enabled_false_turns_auto_sync_off_and_keeps_the_policy() -> None:
    policy = {"prune": True, "selfHeal": True, "allowEmpty": True}
    argocd = await make(automated=policy)
    try:
        status, answer = await patch(argocd, {"syncPolicy": {"automated": {"enabled": False}}})

        assert status == 200
        assert answer["spec"]["syncPolicy"]["automated"] == {**policy, "enabled": False}
        assert (await call(argocd, "POST", f"{API}/rollback", body={"id": 0}))[0] == 200
        app = await argocd.wait_idle(APP)
        assert running(app) == (2, A)  # stays rolled back: auto-sync is off
        assert app["spec"]["syncPolicy"]["automated"] == {**policy, "enabled": False}
    finally:
        await argocd.stop()


async def test_before_argo_cd_3_1_enabled_is_dropped_and_auto_sync_stays_on() -> None:
    argocd = await make(automated={"prune": True}, supports_automated_enabled=False)
    try:
        status, answer = await patch(argocd, {"syncPolicy": {"automated": {"enabled": False}}})

        assert status == 200
        assert answer["spec"]["syncPolicy"]["automated"] == {"prune": True}
        status, _ = await call(argocd, "POST", f"{API}/rollback", body={"id": 0})
        assert status == 400
    finally:
        await argocd.stop()


async def test_a_patch_is_read_back_into_argos_types(argocd: ArgoCDStandIn) -> None:
    status, answer = await patch(argocd, {"syncPolicy": {"automated": {"prune": True, "x": 1}}})
    assert status == 200
    assert answer["spec"]["syncPolicy"]["automated"] == {"prune": True}

    status, body = await patch(argocd, {"syncPolicy": {"automated": {"prune": "yes"}}})
    assert status == 500 and body["code"] == 2
    assert body["message"].startswith("error unmarshaling patched app: json: cannot unmarshal")

    status, body = await call(argocd, "PATCH", body={"patch": "[]", "patchType": "json"})
    assert (status, body) == (400, argo_error(3, "Patch type 'json' is not supported"))


async def test_turning_auto_sync_back_on_after_a_rollback_redeploys_head(
    argocd: ArgoCDStandIn,
) -> None:
    await call(argocd, "POST", f"{API}/rollback", body={"id": 0})
    assert running(await argocd.wait_idle(APP)) == (2, A)

    await patch(argocd, {"syncPolicy": {"automated": {"prune": False, "selfHeal": False}}})

    app = await argocd.wait_idle(APP)
    assert running(app) == (3, B)
    assert app["status"]["history"][-1]["initiatedBy"] == {"automated": True}
    assert app["status"]["operationState"]["operation"]["initiatedBy"] == {"automated": True}
    assert app["status"]["sync"]["status"] == "Synced"


async def test_auto_sync_deploys_a_push_and_does_not_retry_a_failed_one() -> None:
    argocd = await make(automated={})
    try:
        argocd.add_commit(REPO, D, images("1.3"))
        app = await argocd.wait_idle(APP)
        assert (app["status"]["sync"]["revision"], running(app)) == (D, (2, D))

        argocd.fail_revision(C)
        await patch(argocd, {"source": {"targetRevision": "release"}})
        failed = await argocd.wait_idle(APP)
        assert failed["status"]["operationState"]["phase"] == "Failed"
        assert failed["status"]["sync"]["revision"] == C
        assert argocd.operations == [(APP, D, True), (APP, C, True)]  # tried once only
        assert running(failed) == (2, D)
    finally:
        await argocd.stop()


# -- ApplicationSets ------------------------------------------------------------------------


async def test_an_application_set_owns_its_application_and_undoes_a_patch() -> None:
    argocd = await make(automated={"prune": True}, application_set="checkout")
    try:
        metadata = argocd.application(APP)["metadata"]
        assert metadata["labels"] == {APPSET_LABEL: "checkout"}
        [owner] = metadata["ownerReferences"]
        assert (owner["apiVersion"], owner["kind"], owner["name"], owner["controller"]) == (
            "argoproj.io/v1alpha1",
            "ApplicationSet",
            "checkout",
            True,
        )

        status, answer = await patch(argocd, {"syncPolicy": {"automated": None}})

        assert status == 200 and "automated" not in answer["spec"]["syncPolicy"]
        app = await argocd.wait_idle(APP)
        assert app["spec"]["syncPolicy"]["automated"] == {"prune": True}
    finally:
        await argocd.stop()


async def test_adopting_an_application_sets_its_owner(argocd: ArgoCDStandIn) -> None:
    argocd.adopt(APP, application_set="checkout")

    owner = argocd.application(APP)["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("ApplicationSet", "checkout")


# -- auth and RBAC --------------------------------------------------------------------------


async def test_unknown_application_is_hidden_unless_the_project_is_named(
    argocd: ArgoCDStandIn,
) -> None:
    status, body = await call(argocd, "GET", "/api/v1/applications/nope")
    assert (status, body) == (403, argo_error(7, "permission denied"))
    status, body = await call(argocd, "GET", "/api/v1/applications/nope?project=payments")
    assert (status, body) == (404, argo_error(5, 'applications.argoproj.io "nope" not found'))
    status, _ = await call(argocd, "GET", f"{API}?project=search")
    assert status == 404


async def test_missing_or_unknown_token_is_401(argocd: ArgoCDStandIn) -> None:
    assert await call(argocd, "GET", token=None) == (401, argo_error(16, "no session information"))
    assert await call(argocd, "GET", token="nope") == (
        401,
        argo_error(16, "invalid session: token signature is invalid"),
    )


def test_commits_are_full_shas() -> None:
    with pytest.raises(ValueError, match="full 40-character commit SHA"):
        ArgoCDStandIn(token=TOKEN).add_commit(REPO, "a1b2c3d", images("1.0"))
