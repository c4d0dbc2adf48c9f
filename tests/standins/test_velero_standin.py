"""Velero's API in the Kubernetes stand-in, seen through the official client's
CustomObjectsApi: each behaviour pinned here follows the Velero file named in
sandbox/standins/velero.py (phases from backup_types.go / restore_types.go, validation
from backup_controller.go / restore_controller.go, schedules from schedule_controller.go,
expiry from gc_controller.go)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sandbox.standins.kubernetes import KubernetesStandIn
from sandbox.standins.velero import VeleroStandIn, cron_interval, parse_duration

NS = "checkout-prod"
G, V, VNS = "velero.io", "v1", "velero"


@dataclass
class Rig:
    kube: KubernetesStandIn
    velero: VeleroStandIn
    custom: client.CustomObjectsApi
    core: client.CoreV1Api

    async def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = await asyncio.to_thread(
            self.custom.create_namespaced_custom_object, G, V, VNS, plural, body
        )
        return found

    async def get(self, plural: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await asyncio.to_thread(
            self.custom.get_namespaced_custom_object, G, V, VNS, plural, name
        )
        return found

    async def settle(self, plural: str, name: str, within: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                obj = await self.get(plural, name)
                if obj["status"].get("phase") not in (None, "", "New", "InProgress"):
                    return obj
                await asyncio.sleep(0.02)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    kube = KubernetesStandIn(rollout_seconds=0.01)
    velero = VeleroStandIn(time_scale=0.01).install(kube)
    await kube.start()
    config = client.Configuration(host=kube.url)
    config.ssl_ca_cert = str(kube.ca_file) if kube.ca_file else None  # its CA, made at start
    api = client.ApiClient(config)
    rig = Rig(kube, velero, client.CustomObjectsApi(api), client.CoreV1Api(api))
    await asyncio.to_thread(
        rig.core.create_namespace, client.V1Namespace(metadata=client.V1ObjectMeta(name=NS))
    )
    for name in ("settings", "flags", "routes"):
        await asyncio.to_thread(
            rig.core.create_namespaced_config_map,
            NS,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"k": name}),
        )
    try:
        yield rig
    finally:
        await asyncio.to_thread(api.close)
        await kube.stop()


def backup(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Backup",
        "metadata": {"name": name},
        "spec": {"includedNamespaces": [NS], **spec},
    }


def restore(name: str, backup_name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "velero.io/v1",
        "kind": "Restore",
        "metadata": {"name": name},
        "spec": {"backupName": backup_name, **spec},
    }


async def test_discovery_lists_the_velero_group(rig: Rig) -> None:
    groups = await asyncio.to_thread(client.ApisApi(rig.custom.api_client).get_api_versions)
    assert "velero.io" in [g.name for g in groups.groups]
    connector = aiohttp.TCPConnector(ssl=rig.kube.client_ssl())
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(f"{rig.kube.url}/apis/velero.io/v1") as r,
    ):
        resources = await r.json()
    names = {r["name"] for r in resources["resources"]}
    assert names == {"backups", "restores", "schedules", "backupstoragelocations"}


async def test_a_backup_moves_in_progress_then_completed_with_counts_and_expiry(rig: Rig) -> None:
    rig.velero.time_scale = 0.2  # 5 s + 2 s x 3 items = 2.2 s
    created = await rig.create("backups", backup("b1", ttl="24h"))
    # backup_controller.go: validated and started on the first reconcile
    assert created["status"]["phase"] == "InProgress"
    assert created["status"]["progress"] == {"totalItems": 3, "itemsBackedUp": 0}
    assert created["metadata"]["labels"]["velero.io/storage-location"] == "default"
    assert created["spec"]["storageLocation"] == "default"
    start = datetime.fromisoformat(created["status"]["startTimestamp"])
    expiry = datetime.fromisoformat(created["status"]["expiration"])
    assert (expiry - start).total_seconds() == 24 * 3600
    rig.velero.advance(1.2)
    halfway = await rig.get("backups", "b1")
    assert halfway["status"]["phase"] == "InProgress"
    assert 0 < halfway["status"]["progress"]["itemsBackedUp"] < 3
    rig.velero.advance(1.2)
    done = await rig.get("backups", "b1")
    assert done["status"]["phase"] == "Completed"
    assert done["status"]["progress"] == {"totalItems": 3, "itemsBackedUp": 3}
    assert "completionTimestamp" in done["status"]
    assert "errors" not in done["status"]


async def test_the_default_ttl_is_720h(rig: Rig) -> None:
    created = await rig.create("backups", backup("b1"))
    assert created["spec"]["ttl"] == "720h0m0s"


async def test_item_errors_make_it_partially_failed(rig: Rig) -> None:
    rig.velero.failing_items[f"configmaps/{NS}/flags"] = "timed out"
    await rig.create("backups", backup("b1"))
    done = await rig.settle("backups", "b1")
    assert done["status"]["phase"] == "PartiallyFailed"
    assert done["status"]["errors"] == 1
    assert done["status"]["progress"]["itemsBackedUp"] == 2
    assert rig.velero.errors_of("backups", "b1") == [f"configmaps/{NS}/flags: timed out"]


async def test_a_whole_backup_failure_is_failed_with_its_reason(rig: Rig) -> None:
    rig.velero.fail_next_backup = "rpc error: code = Unavailable desc = connection refused"
    await rig.create("backups", backup("b1"))
    done = await rig.settle("backups", "b1")
    assert done["status"]["phase"] == "Failed"
    assert "connection refused" in done["status"]["failureReason"]


async def test_a_missing_or_unavailable_location_fails_validation_in_veleros_words(
    rig: Rig,
) -> None:
    missing = await rig.create("backups", backup("b1", storageLocation="elsewhere"))
    assert missing["status"]["phase"] == "FailedValidation"
    [text] = missing["status"]["validationErrors"]
    assert "the default elsewhere was not found" in text
    rig.velero.add_location("default", phase="Unavailable", message="bucket gone")
    down = await rig.create("backups", backup("b2"))
    assert down["status"]["phase"] == "FailedValidation"
    assert down["status"]["validationErrors"] == [
        "backup can't be created because BackupStorageLocation default is in Unavailable status."
    ]
    location = await rig.get("backupstoragelocations", "default")
    assert location["status"] == {
        "phase": "Unavailable",
        "message": "bucket gone",
        "lastValidationTime": location["status"]["lastValidationTime"],
    }


async def test_restore_into_a_new_namespace_creates_it_and_the_objects(rig: Rig) -> None:
    await rig.create("backups", backup("b1"))
    await rig.settle("backups", "b1")
    await rig.create("restores", restore("r1", "b1", namespaceMapping={NS: "checkout-copy"}))
    done = await rig.settle("restores", "r1")
    assert done["status"]["phase"] == "Completed"
    assert done["status"]["progress"] == {"totalItems": 3, "itemsRestored": 3}
    assert rig.kube.objects.get("namespaces", None, "checkout-copy") is not None
    copied = rig.kube.objects.get("configmaps", "checkout-copy", "flags")
    assert copied is not None and copied["data"] == {"k": "flags"}


async def test_restore_over_existing_objects_warns_unless_policy_is_update(rig: Rig) -> None:
    await rig.create("backups", backup("b1"))
    await rig.settle("backups", "b1")
    await asyncio.to_thread(
        rig.core.patch_namespaced_config_map, "flags", NS, {"data": {"k": "changed"}}
    )
    await rig.create("restores", restore("r1", "b1"))
    kept = await rig.settle("restores", "r1")
    assert kept["status"]["phase"] == "Completed"
    assert kept["status"]["warnings"] == 3
    assert rig.velero.warnings_of("restores", "r1")[0] == (
        'could not restore, ConfigMap "flags" already exists. Warning: the in-cluster version '
        "is different than the backed-up version"
    )
    assert (rig.kube.objects.get("configmaps", NS, "flags") or {})["data"] == {"k": "changed"}
    await rig.create("restores", restore("r2", "b1", existingResourcePolicy="update"))
    assert (await rig.settle("restores", "r2"))["status"]["phase"] == "Completed"
    assert (rig.kube.objects.get("configmaps", NS, "flags") or {})["data"] == {"k": "flags"}


async def test_restore_item_errors_make_it_partially_failed(rig: Rig) -> None:
    await rig.create("backups", backup("b1"))
    await rig.settle("backups", "b1")
    rig.velero.failing_items["configmaps/copy/routes"] = "admission webhook denied"
    await rig.create("restores", restore("r1", "b1", namespaceMapping={NS: "copy"}))
    done = await rig.settle("restores", "r1")
    assert done["status"]["phase"] == "PartiallyFailed"
    assert done["status"]["errors"] == 1


async def test_restore_validation_and_an_unfinished_backup(rig: Rig) -> None:
    missing = await rig.create("restores", restore("r1", "nope"))
    assert missing["status"]["phase"] == "FailedValidation"
    assert missing["status"]["validationErrors"] == [
        'Error retrieving backup: backups.velero.io "nope" not found'
    ]
    rig.velero.time_scale = 100.0
    await rig.create("backups", backup("slow"))
    rig.velero.time_scale = 0.01  # the backup keeps its 500 s; the restore takes 0.05 s
    early = await rig.create("restores", restore("r2", "slow"))
    assert early["status"]["phase"] == "InProgress"
    failed = await rig.settle("restores", "r2")
    assert failed["status"]["phase"] == "Failed"
    assert "no contents in object storage" in failed["status"]["failureReason"]
    assert (await rig.get("backups", "slow"))["status"]["phase"] == "InProgress"
    await rig.create("backups", backup("b1"))
    await rig.settle("backups", "b1")
    rig.velero.add_location("default", phase="Unavailable")
    down = await rig.create("restores", restore("r3", "b1"))
    assert down["status"]["validationErrors"] == [
        "The BSL default is unavailable, cannot retrieve the backup"
    ]


async def test_expired_backups_are_deleted_unless_the_location_is_unavailable(rig: Rig) -> None:
    await rig.create("backups", backup("b1", ttl="1h"))
    await rig.create("backups", backup("b2", ttl="3h"))
    await rig.settle("backups", "b2")
    rig.velero.advance(2 * 3600)
    with pytest.raises(ApiException) as gone:
        await rig.get("backups", "b1")
    assert gone.value.status == 404
    assert json.loads(gone.value.body)["message"] == 'backups.velero.io "b1" not found'
    rig.velero.add_location("default", phase="Unavailable")
    rig.velero.advance(2 * 3600)
    kept = await rig.get("backups", "b2")
    assert kept["metadata"]["labels"]["velero.io/gc-failure"] == "BSLUnavailable"


async def test_a_schedule_backs_up_at_once_then_daily_with_its_label(rig: Rig) -> None:
    schedule = {
        "apiVersion": "velero.io/v1",
        "kind": "Schedule",
        "metadata": {"name": "checkout-prod-daily"},
        "spec": {
            "schedule": "0 3 * * *",
            "template": {"includedNamespaces": [NS], "ttl": "168h"},
        },
    }
    created = await rig.create("schedules", schedule)
    assert created["status"]["phase"] == "Enabled"
    found = await asyncio.to_thread(
        rig.custom.list_namespaced_custom_object,
        G,
        V,
        VNS,
        "backups",
        label_selector="velero.io/schedule-name=checkout-prod-daily",
    )
    [first] = found["items"]
    assert first["metadata"]["name"].startswith("checkout-prod-daily-")
    assert first["spec"]["ttl"] == "168h0m0s"
    rig.velero.advance(25 * 3600)
    again = await asyncio.to_thread(rig.custom.list_namespaced_custom_object, G, V, VNS, "backups")
    assert len(again["items"]) == 2
    assert all(b["metadata"]["name"].endswith("0000") for b in again["items"][1:])
    bad = dict(schedule, metadata={"name": "bad"}, spec={"schedule": "every tuesday"})
    refused = await rig.create("schedules", bad)
    assert refused["status"]["phase"] == "FailedValidation"


def test_durations_and_cron_as_velero_writes_them() -> None:
    assert parse_duration("720h0m0s").total_seconds() == 720 * 3600
    assert parse_duration("90m").total_seconds() == 5400
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("ten")
    assert cron_interval("@every 6h")[0].total_seconds() == 6 * 3600
    assert cron_interval("30 2 * * *")[1] == (2, 30)


async def test_a_resource_modifier_patches_what_is_restored(rig: Rig) -> None:
    await asyncio.to_thread(
        client.AppsV1Api(rig.custom.api_client).create_namespaced_deployment,
        NS,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                },
            },
        },
    )
    await rig.create("backups", backup("b1"))
    await rig.settle("backups", "b1")
    modifier = {"kind": "ConfigMap", "name": "zero"}
    missing = await rig.create("restores", restore("r0", "b1", resourceModifier=modifier))
    assert missing["status"]["validationErrors"] == [
        "failed to get resource modifiers configmap velero/zero"
    ]
    rules = (
        "version: v1\n"
        "resourceModifierRules:\n"
        "- conditions: {groupResource: deployments.apps, resourceNameRegex: '.*'}\n"
        '  mergePatches: [{patchData: \'{"spec": {"replicas": 0}}\'}]\n'
    )
    await asyncio.to_thread(
        rig.core.create_namespaced_config_map,
        VNS,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="zero"), data={"rules": rules}),
    )
    await rig.create(
        "restores",
        restore("r1", "b1", namespaceMapping={NS: "copy"}, resourceModifier=modifier),
    )
    assert (await rig.settle("restores", "r1"))["status"]["phase"] == "Completed"
    copied = rig.kube.objects.get("deployments", "copy", "web")
    assert copied is not None and copied["spec"]["replicas"] == 0
    assert (rig.kube.objects.get("configmaps", "copy", "flags") or {})["data"] == {"k": "flags"}
