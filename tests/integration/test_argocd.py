"""The Argo CD adapter maps Argo CD's answers onto `GitOps`, over HTTP against the stand-in
(whose fidelity to Argo CD tests/standins/test_argocd_standin.py pins).

The point of most of these: what runs is the newest history entry, never
`status.sync.revision` (git's target, which stays at HEAD after a rollback), and turning
automated sync off and on again keeps the exact policy.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.argocd import ArgoCDClient, _application
from kernel.errors import AdapterError
from kernel.ports.systems import AutoSyncEnabled
from sandbox.standins.argocd import APPSET_LABEL, ArgoCDStandIn

TOKEN = "argocd-test-token"
APP = "checkout-prod"
REPO = "https://gitlab.example.com/payments/checkout-deploy.git"
IMAGE = "registry.example.com/payments/checkout"
A = "a1a1a1a1" + "0" * 32
B = "b2b2b2b2" + "1" * 32
C = "c3c3c3c3" + "2" * 32
POLICY = {"prune": True, "selfHeal": True, "allowEmpty": False}


async def standin(
    *, automated: dict[str, bool] | None = None, supports_automated_enabled: bool = True
) -> ArgoCDStandIn:
    argocd = ArgoCDStandIn(
        token=TOKEN, sync_seconds=0.05, supports_automated_enabled=supports_automated_enabled
    )
    await argocd.start()
    argocd.add_commit(REPO, A, [f"{IMAGE}:1.0"], tags=["v1.0"])
    argocd.add_commit(REPO, B, [f"{IMAGE}:1.1"], tags=["v1.1"])
    argocd.add_commit(REPO, C, [f"{IMAGE}:1.2"], branch="release", tags=["v1.2"])
    argocd.add_application(
        APP,
        project="payments",
        repo_url=REPO,
        path="overlays/prod",
        revision=B,
        images=[f"{IMAGE}:1.1"],
        automated=automated,
        history=[(A, [f"{IMAGE}:1.0"]), (B, [f"{IMAGE}:1.1"])],
    )
    return argocd


@pytest.fixture
async def argocd() -> AsyncIterator[ArgoCDStandIn]:
    server = await standin()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(argocd: ArgoCDStandIn) -> AsyncIterator[ArgoCDClient]:
    argo = ArgoCDClient(argocd.url, TOKEN)
    try:
        yield argo
    finally:
        await argo.close()


def patches(argocd: ArgoCDStandIn) -> list[Any]:
    """The merge patches the adapter sent, decoded."""
    return [
        json.loads(r.body["patch"])["spec"]["syncPolicy"]["automated"]
        for r in argocd.requests
        if r.method == "PATCH" and r.body
    ]


async def test_application_maps_argo_json(client: ArgoCDClient) -> None:
    app = await client.application(APP)

    assert app is not None
    assert (app.name, app.sync_status, app.health_status) == (APP, "Synced", "Healthy")
    assert (app.running_revision, app.sync_revision, app.target_revision) == (B, B, "HEAD")
    assert (app.automated, app.auto_sync, app.owner_application_set) == (None, False, None)
    assert app.images == (f"{IMAGE}:1.1",)
    assert [(h.id, h.revision) for h in app.history] == [(0, A), (1, B)]
    assert all(h.deployed_at is not None and h.images == () for h in app.history)
    assert (app.operation_phase, app.operation_revision, app.result_revision) == (None,) * 3


async def test_after_a_rollback_what_runs_is_history_not_sync_revision(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    await client.rollback(APP, history_id=0)
    await argocd.wait_idle(APP)

    app = await client.application(APP)

    assert app is not None
    assert app.running_revision == A
    assert app.sync_revision == B  # git's HEAD: Argo compares against it
    assert (app.sync_status, app.health_status) == ("OutOfSync", "Healthy")
    assert (app.operation_phase, app.operation_revision, app.result_revision) == (
        "Succeeded",
        A,
        A,
    )
    assert app.history[-1].id == 2


async def test_sync_returns_what_argo_resolved_the_revision_to(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    assert await client.sync(APP, revision="v1.2") == C

    running = await client.application(APP)
    assert running is not None
    assert (running.operation_phase, running.operation_revision) == ("Running", C)
    assert running.running_revision == B  # not yet
    await argocd.wait_idle(APP)
    assert await client.sync(APP, revision=A[:7]) == A[:7]  # the controller resolves it
    await argocd.wait_idle(APP)
    done = await client.application(APP)
    assert done is not None
    assert (done.operation_revision, done.result_revision, done.running_revision) == (A[:7], A, A)
    sync_request = next(r for r in argocd.requests if r.path.endswith("/sync"))
    assert sync_request.body == {"name": APP, "revision": "v1.2", "prune": False, "dryRun": False}


async def test_refusals_become_adapter_errors_with_argos_words(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    with pytest.raises(AdapterError) as unknown:
        await client.sync(APP, revision="v9.9")
    assert "unable to resolve 'v9.9' to a commit SHA" in unknown.value.message
    assert not isinstance(unknown.value, AutoSyncEnabled)

    with pytest.raises(AdapterError) as missing:
        await client.rollback(APP, history_id=42)
    assert not isinstance(missing.value, AutoSyncEnabled)
    assert missing.value.status == 400
    assert "does not have deployment with id 42" in missing.value.message


async def test_rollback_and_sync_elsewhere_with_auto_sync_on_are_auto_sync_refusals() -> None:
    argocd = await standin(automated=POLICY)
    client = ArgoCDClient(argocd.url, TOKEN)
    try:
        with pytest.raises(AutoSyncEnabled) as caught:
            await client.rollback(APP, history_id=0)
        assert "automated sync is on" in caught.value.message
        with pytest.raises(AutoSyncEnabled, match="auto-sync currently set to HEAD"):
            await client.sync(APP, revision="v1.2")
    finally:
        await client.close()
        await argocd.stop()


async def test_off_with_enabled_false_keeps_the_policy_and_on_restores_it_exactly() -> None:
    argocd = await standin(automated=POLICY)
    client = ArgoCDClient(argocd.url, TOKEN)
    try:
        assert await client.disable_auto_sync(APP) == "enabled: false"
        off = await client.application(APP)
        assert off is not None and off.auto_sync is False
        assert off.automated == {**POLICY, "enabled": False}
        await client.rollback(APP, history_id=0)  # Argo CD takes it now
        await argocd.wait_idle(APP)

        await client.set_automated(APP, dict(POLICY), current=off.automated)

        on = await client.application(APP)
        assert on is not None and on.automated == POLICY  # exactly: no `enabled` left over
        assert patches(argocd) == [{"enabled": False}, {**POLICY, "enabled": None}]
    finally:
        await client.close()
        await argocd.stop()


async def test_before_argo_cd_3_1_off_removes_the_block_and_on_puts_it_back() -> None:
    argocd = await standin(automated=POLICY, supports_automated_enabled=False)
    client = ArgoCDClient(argocd.url, TOKEN)
    try:
        assert await client.disable_auto_sync(APP) == "removed"
        off = await client.application(APP)
        assert off is not None and (off.automated, off.auto_sync) == (None, False)

        await client.set_automated(APP, dict(POLICY), current=None)

        on = await client.application(APP)
        assert on is not None and on.automated == POLICY
        assert patches(argocd) == [{"enabled": False}, None, POLICY]
        with pytest.raises(AdapterError, match="Argo CD keeps"):
            await client.set_automated(APP, {**POLICY, "enabled": True}, current=POLICY)
    finally:
        await client.close()
        await argocd.stop()


async def test_an_application_set_owner_is_read_from_owner_references(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    argocd.adopt(APP, application_set="checkout-envs")

    app = await client.application(APP)

    assert app is not None and app.owner_application_set == "checkout-envs"


def test_the_application_set_label_names_the_owner_too() -> None:
    body = {"metadata": {"name": APP, "labels": {APPSET_LABEL: "from-label"}}}
    assert _application(body).owner_application_set == "from-label"


def test_a_requested_operation_counts_as_running_before_argo_picks_it_up() -> None:
    """Right after a sync request, ``operation`` is set while ``operationState`` still
    describes the previous, finished operation; that is not a result yet."""
    body = {
        "metadata": {"name": APP},
        "operation": {"sync": {"revision": C}},
        "status": {
            "operationState": {
                "phase": "Failed",
                "message": "old sync",
                "operation": {"sync": {"revision": A}},
                "syncResult": {"revision": A},
            }
        },
    }
    app = _application(body)
    assert (app.operation_phase, app.operation_message) == ("Running", None)
    assert (app.operation_revision, app.result_revision) == (C, None)
    assert (app.sync_status, app.health_status, app.auto_sync) == ("Unknown", "Unknown", False)


def test_without_history_a_successful_sync_result_is_what_runs() -> None:
    state = {"phase": "Succeeded", "operation": {"sync": {"revision": "v1"}}}
    synced = {"status": {"operationState": {**state, "syncResult": {"revision": A}}}}
    assert _application(synced).running_revision == A
    dry = {"phase": "Succeeded", "operation": {"sync": {"revision": "v1", "dryRun": True}}}
    dry_run = {"status": {"operationState": {**dry, "syncResult": {"revision": A}}}}
    assert _application(dry_run).running_revision == ""


async def test_unknown_application_is_hidden_unless_the_project_is_named(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    with pytest.raises(AdapterError) as caught:
        await client.application("nope")
    assert caught.value.status == 403
    assert "permission denied" in caught.value.message

    scoped = ArgoCDClient(argocd.url, TOKEN, project="payments")
    try:
        assert await scoped.application("nope") is None
        assert await scoped.application(APP) is not None
        await scoped.disable_auto_sync(APP)
    finally:
        await scoped.close()
    assert [r.body["project"] for r in argocd.requests if r.method == "PATCH" and r.body] == [
        "payments"
    ]


async def test_a_bad_token_is_said_without_the_token(argocd: ArgoCDStandIn) -> None:
    wrong = ArgoCDClient(argocd.url, "not-the-token")
    try:
        with pytest.raises(AdapterError) as caught:
            await wrong.application(APP)
    finally:
        await wrong.close()
    assert caught.value.status == 401
    assert "check ARGOCD_TOKEN" in caught.value.message
    assert "not-the-token" not in str(caught.value)


async def test_fail_next_answers_500_once(argocd: ArgoCDStandIn, client: ArgoCDClient) -> None:
    argocd.fail_next("GET", f"/applications/{APP}")
    with pytest.raises(AdapterError) as caught:
        await client.application(APP)
    assert caught.value.status == 500
    assert caught.value.message == f"reading application {APP}: internal error"
    assert await client.application(APP) is not None
    assert [r.status for r in argocd.requests] == [500, 200]


async def test_a_failing_sync_is_failed_and_degraded(
    argocd: ArgoCDStandIn, client: ArgoCDClient
) -> None:
    argocd.fail_revision(C)
    await client.sync(APP, revision="v1.2")
    await argocd.wait_idle(APP)
    app = await client.application(APP)
    assert app is not None
    assert (app.operation_phase, app.health_status, app.sync_status) == (
        "Failed",
        "Degraded",
        "OutOfSync",
    )
    assert app.operation_message == "one or more synchronization tasks completed unsuccessfully"
    assert (app.running_revision, app.result_revision) == (B, C)


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
