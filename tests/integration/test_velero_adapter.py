"""The Velero adapter (adapters/velero.py) against Velero's stand-in inside the Kubernetes
stand-in, through a kubeconfig with two clusters: what it creates, reads and deletes,
idempotently, and Velero's and the API server's words when something is wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.kubernetes import KubernetesClusters
from adapters.velero import VeleroClusters
from kernel.errors import AdapterError
from kernel.ports.backups import backup_labels, backup_selector
from sandbox.standins.kubernetes import KubernetesStandIn
from sandbox.standins.velero import VeleroStandIn
from tests.integration.test_kubernetes_adapter import TOKEN, kubeconfig


@dataclass
class Env:
    blue: KubernetesStandIn
    velero: VeleroStandIn
    clusters: VeleroClusters


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    blue, green = KubernetesStandIn(token=TOKEN), KubernetesStandIn(token=TOKEN)
    velero = VeleroStandIn(time_scale=0.001).install(blue)
    async with blue, green:
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig({"blue": blue, "green": green}))
        kube = KubernetesClusters.from_kubeconfig(str(path))
        try:
            yield Env(blue, velero, VeleroClusters(kube))
        finally:
            kube.close()


async def test_backups_are_created_once_and_listed_newest_first(env: Env) -> None:
    velero = env.clusters.backups("blue")
    labels = backup_labels("checkout", "prod")
    first = await velero.create_backup(
        name="b1", namespace="checkout-prod", ttl="24h0m0s", labels=labels
    )
    assert first.phase == "InProgress" and first.namespaces == ("checkout-prod",)
    again = await velero.create_backup(
        name="b1", namespace="checkout-prod", ttl="24h0m0s", labels=labels
    )
    assert again.name == "b1"  # a re-run step finds the one it made
    env.velero.advance(2)
    await velero.create_backup(name="b2", namespace="checkout-prod", ttl="1h", labels=labels)
    await velero.create_backup(name="other", namespace="x", ttl="1h", labels={})
    listed = await velero.backups(selector=backup_selector("checkout", "prod"))
    assert [b.name for b in listed] == ["b2", "b1"]
    done = await velero.backup("b1")
    assert done is not None and done.phase == "Completed" and done.restorable
    assert done.expires_at is not None and done.started_at is not None
    assert (done.expires_at - done.started_at).total_seconds() == 24 * 3600
    assert await velero.backup("nope") is None


async def test_restores_and_the_storage_location(env: Env) -> None:
    velero = env.clusters.backups("blue")
    made = await velero.create_restore(
        name="r1",
        backup="missing",
        namespace_mapping={"a": "b"},
        existing_policy="none",
        labels={},
    )
    assert made.phase == "FailedValidation"
    assert made.validation_errors == (
        'Error retrieving backup: backups.velero.io "missing" not found',
    )
    location = await velero.location("default")
    assert location is not None and location.available
    env.velero.add_location("default", phase="Unavailable", message="bucket gone")
    location = await velero.location("default")
    assert location is not None and not location.available and location.message == "bucket gone"
    assert await velero.location("elsewhere") is None


async def test_a_schedule_is_made_updated_and_deleted_idempotently(env: Env) -> None:
    velero = env.clusters.backups("blue")
    labels = backup_labels("checkout", "prod")
    args = dict(name="checkout-prod-daily", namespace="checkout-prod", ttl="720h0m0s")
    assert await velero.ensure_schedule(cron="0 3 * * *", labels=labels, **args) is True
    assert await velero.ensure_schedule(cron="0 3 * * *", labels=labels, **args) is False
    assert await velero.ensure_schedule(cron="0 4 * * *", labels=labels, **args) is True
    schedule = await velero.schedule("checkout-prod-daily")
    assert schedule is not None
    assert (schedule.cron, schedule.ttl, schedule.phase) == ("0 4 * * *", "720h0m0s", "Enabled")
    assert schedule.namespaces == ("checkout-prod",)
    assert await velero.delete_schedule("checkout-prod-daily") is True
    assert await velero.delete_schedule("checkout-prod-daily") is False
    assert await velero.schedule("checkout-prod-daily") is None


async def test_a_cluster_without_velero_and_an_unknown_context_say_so(env: Env) -> None:
    green = env.clusters.backups("green")  # no Velero installed there: no such resource
    with pytest.raises(AdapterError) as caught:
        await green.create_backup(name="b", namespace="n", ttl="1h", labels={})
    assert "creating backup b failed: the server could not find the requested resource" in str(
        caught.value
    )
    with pytest.raises(AdapterError, match="no cluster context 'purple'"):
        env.clusters.backups("purple")
