"""Velero: Backups, Restores, Schedules and BackupStorageLocations (`velero.io/v1`) through
the official client's CustomObjectsApi, on the same ApiClients (kubeconfig contexts) as
`adapters.kubernetes`.

Velero's objects live in its own namespace (`velero` unless installed elsewhere). The
fields read here are those of Velero's `pkg/apis/velero/v1/backup_types.go`,
`restore_types.go`, `schedule_types.go` and `backupstoragelocation_types.go`; a Backup
names the namespace it holds in `spec.includedNamespaces`, a Restore maps it elsewhere
with `spec.namespaceMapping` and says what to do with objects already there with
`spec.existingResourcePolicy` (`none`: keep them, with a warning each; `update`: replace).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from adapters.kubernetes import KubernetesClusters
from adapters.kubernetes_namespaces import status_message
from kernel.errors import AdapterError
from kernel.ports.backups import (
    BackupInfo,
    BackupSystems,
    ClusterBackups,
    RestoreInfo,
    ScheduleInfo,
    StorageLocation,
)

__all__ = ["VeleroBackups", "VeleroClusters"]

T = TypeVar("T")
GROUP, VERSION = "velero.io", "v1"
SCHEDULE_LABEL = "velero.io/schedule-name"


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def backup_info(obj: dict[str, Any]) -> BackupInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    progress = status.get("progress") or {}
    labels = dict(meta.get("labels") or {})
    return BackupInfo(
        name=str(meta["name"]),
        phase=str(status.get("phase") or ""),
        namespaces=tuple(spec.get("includedNamespaces") or ()),
        storage_location=str(spec.get("storageLocation") or ""),
        created_at=_when(meta.get("creationTimestamp")),
        started_at=_when(status.get("startTimestamp")),
        completed_at=_when(status.get("completionTimestamp")),
        expires_at=_when(status.get("expiration")),
        ttl=str(spec.get("ttl") or ""),
        items_done=int(progress.get("itemsBackedUp") or 0),
        items_total=int(progress.get("totalItems") or 0),
        warnings=int(status.get("warnings") or 0),
        errors=int(status.get("errors") or 0),
        failure_reason=str(status.get("failureReason") or ""),
        validation_errors=tuple(status.get("validationErrors") or ()),
        schedule=labels.get(SCHEDULE_LABEL),
        labels=labels,
    )


def restore_info(obj: dict[str, Any]) -> RestoreInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    progress = status.get("progress") or {}
    return RestoreInfo(
        name=str(meta["name"]),
        backup=str(spec.get("backupName") or ""),
        phase=str(status.get("phase") or ""),
        namespace_mapping=dict(spec.get("namespaceMapping") or {}),
        existing_policy=str(spec.get("existingResourcePolicy") or "none"),
        items_done=int(progress.get("itemsRestored") or 0),
        items_total=int(progress.get("totalItems") or 0),
        warnings=int(status.get("warnings") or 0),
        errors=int(status.get("errors") or 0),
        failure_reason=str(status.get("failureReason") or ""),
        validation_errors=tuple(status.get("validationErrors") or ()),
        labels=dict(meta.get("labels") or {}),
    )


def schedule_info(obj: dict[str, Any]) -> ScheduleInfo:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    template = spec.get("template") or {}
    return ScheduleInfo(
        name=str(meta["name"]),
        cron=str(spec.get("schedule") or ""),
        ttl=str(template.get("ttl") or ""),
        phase=str(status.get("phase") or ""),
        paused=bool(spec.get("paused")),
        last_backup=_when(status.get("lastBackup")),
        namespaces=tuple(template.get("includedNamespaces") or ()),
    )


class VeleroBackups:
    """`ClusterBackups` for one cluster, on CustomObjectsApi."""

    def __init__(
        self, api: client.ApiClient, *, name: str, namespace: str = "velero", timeout: float = 10
    ) -> None:
        self.name = name
        self.namespace = namespace
        self._custom: Any = client.CustomObjectsApi(api)
        self._core: Any = client.CoreV1Api(api)
        self._timeout = timeout

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except ApiException as exc:
            raise AdapterError(
                "Velero", f"{what} failed: {status_message(exc)}", status=exc.status
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise AdapterError(
                "Velero", f"{what} failed: cannot reach cluster {self.name} ({type(exc).__name__})"
            ) from exc

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def _create(self, plural: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, **body}
        try:
            made: dict[str, Any] = self._custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, body, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            found = self._get(plural, body["metadata"]["name"])
            if found is None:
                raise
            return found
        return made

    def _list(self, plural: str, selector: str) -> list[dict[str, Any]]:
        found = self._custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            plural,
            label_selector=selector,
            _request_timeout=self._timeout,
        )
        return list(found.get("items") or [])

    async def create_backup(
        self,
        *,
        name: str,
        namespace: str,
        ttl: str,
        labels: dict[str, str],
        storage_location: str | None = None,
        snapshot_volumes: bool = True,
    ) -> BackupInfo:
        spec: dict[str, Any] = {
            "includedNamespaces": [namespace],
            "ttl": ttl,
            "snapshotVolumes": snapshot_volumes,
        }
        if storage_location:
            spec["storageLocation"] = storage_location
        body = {"metadata": {"name": name, "labels": labels}, "spec": spec}
        made = await self._call(
            f"creating backup {name}", lambda: self._create("backups", "Backup", body)
        )
        return backup_info(made)

    async def backup(self, name: str) -> BackupInfo | None:
        found = await self._call(f"reading backup {name}", lambda: self._get("backups", name))
        return backup_info(found) if found is not None else None

    async def backups(self, *, selector: str) -> list[BackupInfo]:
        found = await self._call("listing backups", lambda: self._list("backups", selector))
        infos = [backup_info(o) for o in found]
        return sorted(infos, key=lambda b: (b.created_at or datetime.min, b.name), reverse=True)

    async def create_restore(
        self,
        *,
        name: str,
        backup: str,
        namespace_mapping: dict[str, str],
        existing_policy: str,
        labels: dict[str, str],
        resource_modifier: str | None = None,
    ) -> RestoreInfo:
        spec: dict[str, Any] = {"backupName": backup, "existingResourcePolicy": existing_policy}
        if namespace_mapping:
            spec["namespaceMapping"] = namespace_mapping
        if resource_modifier:
            spec["resourceModifier"] = {"kind": "ConfigMap", "name": resource_modifier}
        body = {"metadata": {"name": name, "labels": labels}, "spec": spec}
        made = await self._call(
            f"creating restore {name}", lambda: self._create("restores", "Restore", body)
        )
        return restore_info(made)

    def _ensure_config_map(self, name: str, rules: str) -> bool:
        data = {"rules": rules}
        try:
            current = self._core.read_namespaced_config_map(
                name, self.namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = client.V1ConfigMap(
                metadata=client.V1ObjectMeta(
                    name=name, labels={"app.kubernetes.io/managed-by": "platform-bot"}
                ),
                data=data,
            )
            self._core.create_namespaced_config_map(
                self.namespace, body, _request_timeout=self._timeout
            )
            return True
        if (current.data or {}) == data:
            return False
        self._core.patch_namespaced_config_map(
            name, self.namespace, {"data": data}, _request_timeout=self._timeout
        )
        return True

    async def ensure_resource_modifier(self, name: str, rules: str) -> bool:
        return await self._call(
            f"writing resource modifiers {name}", lambda: self._ensure_config_map(name, rules)
        )

    async def restore(self, name: str) -> RestoreInfo | None:
        found = await self._call(f"reading restore {name}", lambda: self._get("restores", name))
        return restore_info(found) if found is not None else None

    async def location(self, name: str) -> StorageLocation | None:
        found = await self._call(
            f"reading backup storage location {name}",
            lambda: self._get("backupstoragelocations", name),
        )
        if found is None:
            return None
        spec, status = found.get("spec") or {}, found.get("status") or {}
        return StorageLocation(
            name=name,
            phase=str(status.get("phase") or "Unavailable"),
            message=str(status.get("message") or ""),
            access_mode=str(spec.get("accessMode") or "ReadWrite"),
        )

    def _ensure_schedule(self, body: dict[str, Any]) -> bool:
        name = body["metadata"]["name"]
        current = self._get("schedules", name)
        if current is None:
            self._create("schedules", "Schedule", body)
            return True
        if current.get("spec") == body["spec"]:
            return False
        self._custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "schedules", name, {"spec": body["spec"]}
        )
        return True

    async def ensure_schedule(
        self, *, name: str, namespace: str, cron: str, ttl: str, labels: dict[str, str]
    ) -> bool:
        body = {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "schedule": cron,
                "template": {
                    "includedNamespaces": [namespace],
                    "ttl": ttl,
                    "metadata": {"labels": labels},
                },
            },
        }
        return await self._call(f"making schedule {name}", lambda: self._ensure_schedule(body))

    async def schedule(self, name: str) -> ScheduleInfo | None:
        found = await self._call(f"reading schedule {name}", lambda: self._get("schedules", name))
        return schedule_info(found) if found is not None else None

    def _delete(self, plural: str, name: str) -> bool:
        try:
            self._custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def delete_schedule(self, name: str) -> bool:
        return await self._call(
            f"deleting schedule {name}", lambda: self._delete("schedules", name)
        )


class VeleroClusters:
    """`BackupSystems`: Velero in every cluster the Kubernetes adapter knows."""

    def __init__(self, clusters: KubernetesClusters, *, namespace: str = "velero") -> None:
        self._by_context = {
            context: VeleroBackups(clusters.api_client(context), name=context, namespace=namespace)
            for context in clusters.contexts()
        }

    def backups(self, context: str) -> ClusterBackups:
        found = self._by_context.get(context)
        if found is None:
            raise AdapterError(
                "Velero",
                f"no cluster context {context!r}; known: {', '.join(self._by_context) or 'none'}",
            )
        return found


def _is_port(clusters: VeleroClusters, one: VeleroBackups) -> tuple[BackupSystems, ClusterBackups]:
    """Checked by mypy: the classes implement the Protocols."""
    return clusters, one
