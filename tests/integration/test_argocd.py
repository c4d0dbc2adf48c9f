"""The Argo CD stand-in answers as Argo CD does, and the adapter maps it onto `GitOps`.

Each test runs the real `ArgoCDClient` over HTTP against `ArgoCDStandIn`; where the exact
wire answer matters (status code and gRPC-gateway body), a plain aiohttp request checks
it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from adapters.argocd import ArgoCDClient, _application
from kernel.errors import AdapterError
from kernel.ports.systems import AutoSyncEnabled
from sandbox.standins.argocd import ArgoCDStandIn

TOKEN = "argocd-test-token"
APP = "checkout-prod"
IMAGE = "registry.example.com/payments/checkout"
API = f"/api/v1/applications/{APP}"


@pytest.fixture
async def argocd() -> AsyncIterator[ArgoCDStandIn]:
    async with ArgoCDStandIn(token=TOKEN, sync_seconds=0.05) as standin:
        standin.add_application(
            APP,
            project="payments",
            repo_url="https://gitlab.example.com/payments/checkout-deploy.git",
            path="overlays/prod",
            revision="b2b2b2b",
            images=[f"{IMAGE}:1.1"],
            auto_sync=True,
            history=[("a1a1a1a", [f"{IMAGE}:1.0"]), ("b2b2b2b", [f"{IMAGE}:1.1"])],
        )
        standin.set_revision_images("c3c3c3c", [f"{IMAGE}:1.2"])
        yield standin


@pytest.fixture
async def client(argocd: ArgoCDStandIn) -> AsyncIterator[ArgoCDClient]:
    argo = ArgoCDClient(argocd.url, TOKEN)
    try:
        yield argo
    finally:
        await argo.close()


async def raw(
    argocd: ArgoCDStandIn,
    method: str,
    path: str,
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


def argo_error(code: int, message: str) -> dict[str, Any]:
    return {"error": message, "code": code, "message": message}


async def test_application_maps_argo_json(argocd: ArgoCDStandIn, client: ArgoCDClient) -> None:
    app = await client.application(APP)
    assert app is not None
    assert (app.name, app.sync_status, app.health_status) == (APP, "Synced", "Healthy")
    assert (app.revision, app.auto_sync, app.images) == ("b2b2b2b", True, (f"{IMAGE}:1.1",))
    assert [(h.id, h.revision) for h in app.history] == [(0, "a1a1a1a"), (1, "b2b2b2b")]
    assert all(h.deployed_at is not None and h.images == () for h in app.history)
    assert (app.operation_phase, app.operation_message) == (None, None)

    raw_app = argocd.application(APP)
    assert raw_app["metadata"]["name"] == APP
    assert raw_app["spec"]["source"] == {
        "repoURL": "https://gitlab.example.com/payments/checkout-deploy.git",
        "path": "overlays/prod",
        "targetRevision": "HEAD",
    }
    assert raw_app["spec"]["syncPolicy"]["automated"] == {"prune": False, "selfHeal": False}
    assert "operation" not in raw_app and "operationState" not in raw_app["status"]


async def test_sync_runs_an_operation_then_records_history(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    await client.set_auto_sync(APP, enabled=False)
    await client.sync(APP, revision="c3c3c3c")

    running = await client.application(APP)
    assert running is not None
    assert (running.operation_phase, running.health_status) == ("Running", "Progressing")
    assert running.revision == "b2b2b2b"

    await argocd.wait_idle(APP)
    done = await client.application(APP)
    assert done is not None
    assert (done.operation_phase, done.operation_message) == (
        "Succeeded",
        "successfully synced (all tasks run)",
    )
    assert (done.sync_status, done.health_status) == ("Synced", "Healthy")
    assert (done.revision, done.images) == ("c3c3c3c", (f"{IMAGE}:1.2",))
    assert [(h.id, h.revision) for h in done.history][-1] == (2, "c3c3c3c")
    sync_request = next(r for r in argocd.requests if r.path.endswith("/sync"))
    assert sync_request.body == {
        "name": APP,
        "revision": "c3c3c3c",
        "prune": False,
        "dryRun": False,
    }


async def test_rollback_with_auto_sync_on_is_refused_as_argo_does(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    status, body = await raw(argocd, "POST", f"{API}/rollback", body={"id": 0})
    assert status == 400
    assert body == argo_error(9, "rollback cannot be initiated when auto-sync is enabled")

    with pytest.raises(AutoSyncEnabled) as caught:
        await client.rollback(APP, history_id=0)
    assert caught.value.status == 400
    assert "automated sync is on" in caught.value.message
    app = await client.application(APP)
    assert app is not None
    assert (app.revision, app.operation_phase, len(app.history)) == ("b2b2b2b", None, 2)


async def test_sync_to_another_revision_with_auto_sync_on_is_refused(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    with pytest.raises(AutoSyncEnabled) as caught:
        await client.sync(APP, revision="c3c3c3c")
    assert "Cannot sync to c3c3c3c: auto-sync currently set to HEAD" in caught.value.message


async def test_auto_sync_off_rollback_then_on_again(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    await client.set_auto_sync(APP, enabled=False)
    off = await client.application(APP)
    assert off is not None and off.auto_sync is False
    assert "automated" not in argocd.application(APP)["spec"]["syncPolicy"]
    patch_request = next(r for r in argocd.requests if r.method == "PATCH")
    assert patch_request.body == {
        "name": APP,
        "patch": '{"spec": {"syncPolicy": {"automated": null}}}',
        "patchType": "merge",
    }

    await client.rollback(APP, history_id=0)
    await argocd.wait_idle(APP)
    rolled = await client.application(APP)
    assert rolled is not None
    assert (rolled.revision, rolled.images) == ("a1a1a1a", (f"{IMAGE}:1.0",))
    assert (rolled.operation_phase, rolled.health_status) == ("Succeeded", "Healthy")
    assert [(h.id, h.revision) for h in rolled.history] == [
        (0, "a1a1a1a"),
        (1, "b2b2b2b"),
        (2, "a1a1a1a"),
    ]

    await client.set_auto_sync(APP, enabled=True)
    on = await client.application(APP)
    assert on is not None and on.auto_sync is True
    assert argocd.application(APP)["spec"]["syncPolicy"]["automated"] == {"enabled": True}
    with pytest.raises(AutoSyncEnabled):
        await client.rollback(APP, history_id=1)


async def test_automated_with_enabled_false_counts_as_off(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    patch = '{"spec": {"syncPolicy": {"automated": {"enabled": false, "prune": true}}}}'
    status, _ = await raw(
        argocd, "PATCH", API, body={"name": APP, "patch": patch, "patchType": "merge"}
    )
    assert status == 200
    app = await client.application(APP)
    assert app is not None and app.auto_sync is False
    await client.rollback(APP, history_id=0)
    assert (await argocd.wait_idle(APP))["status"]["sync"]["revision"] == "a1a1a1a"


async def test_unknown_application_is_hidden_unless_the_project_is_named(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    status, body = await raw(argocd, "GET", "/api/v1/applications/nope")
    assert (status, body) == (403, argo_error(7, "permission denied"))
    status, body = await raw(argocd, "GET", "/api/v1/applications/nope?project=payments")
    assert (status, body) == (404, argo_error(5, 'applications.argoproj.io "nope" not found'))
    status, _ = await raw(argocd, "GET", f"{API}?project=search")
    assert status == 404

    with pytest.raises(AdapterError) as caught:
        await client.application("nope")
    assert caught.value.status == 403
    assert "permission denied" in caught.value.message

    scoped = ArgoCDClient(argocd.url, TOKEN, project="payments")
    try:
        assert await scoped.application("nope") is None
        assert await scoped.application(APP) is not None
        await scoped.set_auto_sync(APP, enabled=False)
    finally:
        await scoped.close()
    assert [r.body["project"] for r in argocd.requests if r.method == "PATCH" and r.body] == [
        "payments"
    ]


async def test_bad_or_missing_token_is_401(argocd: ArgoCDStandIn) -> None:
    status, body = await raw(argocd, "GET", API, token=None)
    assert (status, body) == (401, argo_error(16, "no session information"))

    wrong = ArgoCDClient(argocd.url, "not-the-token")
    try:
        with pytest.raises(AdapterError) as caught:
            await wrong.application(APP)
    finally:
        await wrong.close()
    assert caught.value.status == 401
    assert "check ARGOCD_TOKEN" in caught.value.message
    assert "not-the-token" not in str(caught.value)


async def test_unknown_history_id(argocd: ArgoCDStandIn, client: ArgoCDClient) -> None:
    await client.set_auto_sync(APP, enabled=False)
    status, body = await raw(argocd, "POST", f"{API}/rollback", body={"id": 42})
    assert (status, body) == (
        400,
        argo_error(3, f"application {APP} does not have deployment with id 42"),
    )
    with pytest.raises(AdapterError) as caught:
        await client.rollback(APP, history_id=42)
    assert not isinstance(caught.value, AutoSyncEnabled)
    assert caught.value.status == 400
    assert "does not have deployment with id 42" in caught.value.message


async def test_fail_next_answers_500_once(argocd: ArgoCDStandIn, client: ArgoCDClient) -> None:
    argocd.fail_next("GET", f"/applications/{APP}")
    with pytest.raises(AdapterError) as caught:
        await client.application(APP)
    assert caught.value.status == 500
    assert caught.value.message == f"reading application {APP}: internal error"
    assert await client.application(APP) is not None
    assert [r.status for r in argocd.requests] == [500, 200]


async def test_failing_revision_ends_degraded_without_history(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    argocd.fail_revision("c3c3c3c")
    await client.set_auto_sync(APP, enabled=False)
    await client.sync(APP, revision="c3c3c3c")
    await argocd.wait_idle(APP)
    app = await client.application(APP)
    assert app is not None
    assert (app.operation_phase, app.health_status, app.sync_status) == (
        "Failed",
        "Degraded",
        "OutOfSync",
    )
    assert app.operation_message == "one or more synchronization tasks completed unsuccessfully"
    assert app.revision == "b2b2b2b"
    assert len(app.history) == 2


async def test_second_operation_and_unknown_revision_are_refused(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    await client.set_auto_sync(APP, enabled=False)
    with pytest.raises(AdapterError) as unknown:
        await client.sync(APP, revision="deadbee")
    assert "Unable to resolve 'deadbee' to a commit SHA" in unknown.value.message
    assert not isinstance(unknown.value, AutoSyncEnabled)

    await client.sync(APP, revision="c3c3c3c")
    status, body = await raw(argocd, "POST", f"{API}/rollback", body={"id": 0})
    assert (status, body) == (400, argo_error(9, "another operation is already in progress"))
    await argocd.wait_idle(APP)


async def test_dry_run_and_history_limit(argocd: ArgoCDStandIn, client: ArgoCDClient) -> None:
    await client.set_auto_sync(APP, enabled=False)
    status, _ = await raw(
        argocd, "POST", f"{API}/sync", body={"revision": "c3c3c3c", "dryRun": True}
    )
    assert status == 200
    dry = await argocd.wait_idle(APP)
    assert dry["status"]["operationState"]["phase"] == "Succeeded"
    assert (dry["status"]["sync"]["revision"], len(dry["status"]["history"])) == ("b2b2b2b", 2)

    patch = '{"spec": {"revisionHistoryLimit": 2}}'
    await raw(argocd, "PATCH", API, body={"patch": patch, "patchType": "merge"})
    await client.sync(APP, revision="c3c3c3c")
    await argocd.wait_idle(APP)
    app = await client.application(APP)
    assert app is not None
    assert [(h.id, h.revision) for h in app.history] == [(1, "b2b2b2b"), (2, "c3c3c3c")]


async def test_only_merge_patches_are_accepted(argocd: ArgoCDStandIn) -> None:
    status, body = await raw(argocd, "PATCH", API, body={"patch": "[]", "patchType": "json"})
    assert (status, body) == (400, argo_error(3, "Patch type 'json' is not supported"))


async def test_bad_name_and_unreachable_server_are_adapter_errors() -> None:
    argo = ArgoCDClient("http://127.0.0.1:9", TOKEN, timeout=2.0)
    try:
        with pytest.raises(AdapterError) as bad_name:
            await argo.application("../../settings")
        assert "not an Argo CD application name" in bad_name.value.message
        with pytest.raises(AdapterError) as unreachable:
            await argo.application(APP)
        assert "cannot reach http://127.0.0.1:9" in unreachable.value.message
        assert TOKEN not in str(unreachable.value)
    finally:
        await argo.close()


def test_a_requested_operation_counts_as_running_before_argo_picks_it_up() -> None:
    """Right after a sync request, ``operation`` is set while ``operationState`` still
    describes the previous, finished operation; that is not a result yet."""
    body = {
        "metadata": {"name": APP},
        "operation": {"sync": {"revision": "c3c3c3c"}},
        "status": {"operationState": {"phase": "Succeeded", "message": "old sync"}},
    }
    app = _application(body)
    assert (app.operation_phase, app.operation_message) == ("Running", None)
    assert (app.sync_status, app.health_status, app.auto_sync) == ("Unknown", "Unknown", False)
