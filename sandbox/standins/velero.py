"""Velero's ``velero.io/v1`` API, served by the Kubernetes stand-in, with a small controller.

``VeleroStandIn().install(kube)`` makes the Kubernetes stand-in answer
``/apis/velero.io/v1/...`` (Backup, Restore, Schedule, BackupStorageLocation: create, get,
list with label selectors, merge patch, delete) and list the group in discovery. Objects
are stored here, not in the Kubernetes store; what a backup holds is read from, and a
restore written into, the Kubernetes stand-in's store.

The controller follows Velero (github.com/vmware-tanzu/velero, read at d30d389b):

- Phases are those of ``pkg/apis/velero/v1/backup_types.go`` (BackupPhase: New,
  FailedValidation, InProgress, Completed, PartiallyFailed, Failed) and
  ``restore_types.go`` (RestorePhase, same names); this controller skips the plugin and
  finalizing phases (WaitingForPluginOperations, Finalizing), which it has no plugins for.
- Validation, ``pkg/controller/backup_controller.go`` (prepareBackupRequest): an empty
  ``spec.storageLocation`` is the default location; one that does not exist, is
  ``ReadOnly`` or is not ``Available`` gives ``FailedValidation`` with Velero's own
  ``status.validationErrors`` text; ``spec.ttl`` empty is the server default of 720h
  (``pkg/cmd/server/config/config.go`` defaultBackupTTL) and ``status.expiration`` is
  the start plus the TTL; the location becomes the label ``velero.io/storage-location``
  (``labels_annotations.go`` StorageLocationLabel).
- A backup runs for ``start_seconds + seconds_per_item * items`` (scaled by
  ``time_scale``) with ``status.progress.totalItems`` / ``itemsBackedUp`` best-effort
  (``BackupProgress``); items the test marked failing are errors (``status.errors``) and
  make it ``PartiallyFailed`` (backup_controller.go: "errors" -> PartiallyFailed); a
  whole-backup failure is ``Failed`` with ``status.failureReason``.
- Restores, ``pkg/controller/restore_controller.go`` (validateAndComplete): a missing
  backup is ``FailedValidation`` "Error retrieving backup: ..."; a backup whose location
  is unavailable is "The BSL <name> is unavailable, cannot retrieve the backup". A backup
  that has no contents yet (not Completed / PartiallyFailed) fails when its contents are
  downloaded: ``Failed``. ``spec.namespaceMapping`` renames namespaces; a namespace that
  does not exist is created. An object that already exists is left as it is with the
  warning of ``pkg/restore/restore.go`` ("could not restore, ConfigMap "x" already
  exists. Warning: the in-cluster version is different than the backed-up version")
  unless ``spec.existingResourcePolicy`` is ``update``, when it is replaced.
- Schedules, ``pkg/controller/schedule_controller.go``: ``Enabled`` when the cron
  expression parses, else ``FailedValidation``; a due schedule creates the Backup
  ``<schedule>-<YYYYMMDDhhmmss>`` (``schedule_types.go`` TimestampedName) from
  ``spec.template`` with the label ``velero.io/schedule-name``; a new schedule backs up at
  once unless ``spec.skipImmediately``; ``spec.paused`` stops it.
- Expiry, ``pkg/controller/gc_controller.go``: a backup past ``status.expiration`` is
  deleted, unless its location is missing, read-only or unavailable; then it keeps the
  label ``velero.io/gc-failure`` (BSLNotFound, BSLReadOnly, BSLUnavailable).

The controller moves objects forward whenever the API is asked (and on ``tick()``), by
the clock, which ``advance(seconds)`` moves for tests: what a client sees over the API is
what a controller that runs all the time would have done by then.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import yaml
from aiohttp import web

from sandbox.standins.kubernetes import (
    ApiError,
    KubernetesStandIn,
    Obj,
    Resource,
    already_exists,
    bad_request,
    match_labels,
    merge_patch,
    not_found,
    resource,
)

GROUP, VERSION = "velero.io", "v1"
BACKUPS = Resource(GROUP, VERSION, "backups", "Backup", namespaced=True)
RESTORES = Resource(GROUP, VERSION, "restores", "Restore", namespaced=True)
SCHEDULES = Resource(GROUP, VERSION, "schedules", "Schedule", namespaced=True)
LOCATIONS = Resource(
    GROUP, VERSION, "backupstoragelocations", "BackupStorageLocation", namespaced=True
)
KINDS = {r.plural: r for r in (BACKUPS, RESTORES, SCHEDULES, LOCATIONS)}
DEFAULT_TTL = timedelta(hours=720)
STORAGE_LOCATION_LABEL = "velero.io/storage-location"
SCHEDULE_LABEL = "velero.io/schedule-name"
GC_FAILURE_LABEL = "velero.io/gc-failure"
DONE = ("Completed", "PartiallyFailed", "Failed", "FailedValidation")
CONTENT = (
    "configmaps",
    "secrets",
    "serviceaccounts",
    "resourcequotas",
    "limitranges",
    "networkpolicies",
    "rolebindings",
    "deployments",
)
"""What a backup of a namespace holds here (ReplicaSets are the Deployment's own)."""
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> timedelta:
    """A Go ``metav1.Duration`` as Velero writes it (``720h0m0s``, ``24h``, ``90m``)."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"time: invalid duration {text!r}")
    hours, minutes, seconds = match.groups()
    return timedelta(hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0))


def go_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds // 3600}h{seconds % 3600 // 60}m{seconds % 60}s"


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def cron_interval(expression: str) -> tuple[timedelta, tuple[int, int] | None]:
    """The period of the cron expressions this controller understands, and the (hour,
    minute) it fires at: ``@every 6h``, ``@daily``, ``@hourly``, ``M H * * *``."""
    text = expression.strip()
    if text.startswith("@every "):
        return parse_duration(text.removeprefix("@every ")), None
    if text in ("@daily", "@midnight"):
        return timedelta(days=1), (0, 0)
    if text == "@hourly":
        return timedelta(hours=1), None
    fields = text.split()
    if len(fields) == 5 and fields[2:] == ["*", "*", "*"]:
        minute, hour = fields[0], fields[1]
        if minute.isdigit() and hour.isdigit() and int(minute) < 60 and int(hour) < 24:
            return timedelta(days=1), (int(hour), int(minute))
    raise ValueError(f"invalid schedule: {expression!r}")


@dataclass
class _Plan:
    """What the controller decided when a backup or restore started."""

    started: datetime
    ends: datetime
    items: list[tuple[str, str, Obj]]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failure: str | None = None


class VeleroStandIn:
    """Velero's CRDs and a controller, inside a Kubernetes stand-in."""

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        start_seconds: float = 5.0,
        seconds_per_item: float = 2.0,
        namespace: str = "velero",
    ) -> None:
        self.time_scale = time_scale
        """Durations are multiplied by this (e.g. 0.01 in tests)."""
        self.start_seconds = start_seconds
        self.seconds_per_item = seconds_per_item
        self.namespace = namespace
        """Where Velero runs, and its objects live."""
        self.kube: KubernetesStandIn | None = None
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._contents: dict[str, list[tuple[str, str, Obj]]] = {}
        self._offset = timedelta()
        self.failing_items: dict[str, str] = {}
        """``"<plural>/<namespace>/<name>"`` -> the error a backup or restore of it meets."""
        self.warning_items: dict[str, str] = {}
        """``"<plural>/<namespace>/<name>"`` -> a warning a restore of it meets (as Velero
        warns of fields it dropped or objects it could not patch)."""
        self.fail_next_backup: str | None = None
        """A failureReason: the next backup to run fails as a whole."""

    def install(self, kube: KubernetesStandIn) -> VeleroStandIn:
        """Serve the API through ``kube``, with an Available default location."""
        self.kube = kube
        kube.velero = self
        if kube.objects.get("namespaces", None, self.namespace) is None:
            kube._create(resource("namespaces"), "", {"metadata": {"name": self.namespace}})
        if self.get("backupstoragelocations", "default") is None:
            self.add_location("default")
        return self

    # -- for tests ----------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        """Move the controller's clock forward (expiry, schedules, long backups)."""
        self._offset += timedelta(seconds=seconds)
        self.tick()

    def add_location(
        self,
        name: str,
        *,
        phase: str = "Available",
        message: str = "",
        access_mode: str = "ReadWrite",
    ) -> None:
        """A BackupStorageLocation; ``phase="Unavailable"`` with Velero's message (e.g.
        "BackupStorageLocation \"default\" is unavailable: rpc error: ...")."""
        status: Obj = {"phase": phase, "lastValidationTime": _stamp(self.now())}
        if message:
            status["message"] = message
        self._store(
            LOCATIONS,
            {
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {
                    "provider": "aws",
                    "objectStorage": {"bucket": "platform-backups"},
                    "default": name == "default",
                    "accessMode": access_mode,
                },
                "status": status,
            },
        )

    def get(self, plural: str, name: str) -> Obj | None:
        """One object (after the controller caught up), a copy."""
        self.tick()
        found = self._objects.get((plural, self.namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def all(self, plural: str) -> list[Obj]:
        self.tick()
        return [copy.deepcopy(o) for (p, _, _), o in sorted(self._objects.items()) if p == plural]

    def errors_of(self, plural: str, name: str) -> list[str]:
        """The per-item errors a backup or restore met (Velero keeps them in its logs)."""
        plan = self._plans.get((plural, name))
        return list(plan.errors) if plan else []

    def warnings_of(self, plural: str, name: str) -> list[str]:
        plan = self._plans.get((plural, name))
        return list(plan.warnings) if plan else []

    # -- discovery and HTTP -----------------------------------------------------------

    def group(self) -> Obj:
        gv = {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
        return {"name": GROUP, "versions": [gv], "preferredVersion": gv}

    def resource_list(self) -> Obj:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{GROUP}/{VERSION}",
            "resources": [
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": True,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update"],
                }
                for r in KINDS.values()
            ],
        }

    async def route(self, request: web.Request, rest: list[str]) -> tuple[int, Obj]:
        """Answer ``/apis/velero.io/<rest...>``; errors are raised as ``ApiError``."""
        if not rest or rest[0] != VERSION:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rest = rest[1:]
        if not rest:
            return 200, self.resource_list()
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        res = KINDS.get(rest[0])
        if res is None or len(rest) > 3 or (len(rest) == 3 and rest[2] != "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self.tick()
        name = rest[1] if len(rest) >= 2 else None
        method = request.method
        if name is None and method == "GET":
            return 200, self._list(res, namespace, request.query.get("labelSelector", ""))
        if namespace is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if name is None and method == "POST":
            return 201, self._create(res, namespace, await _body(request))
        current = self._objects.get((res.plural, namespace, name or ""))
        if current is None or name is None:
            raise not_found(res, name or "")
        if method == "GET":
            return 200, copy.deepcopy(current)
        if method == "PATCH":
            patched = merge_patch(copy.deepcopy(current), await _body(request))
            patched["metadata"] = {**current["metadata"], **patched.get("metadata", {})}
            return 200, self._save(res, patched)
        if method == "PUT":
            body = await _body(request)
            body["metadata"] = {**current["metadata"], **body.get("metadata", {})}
            return 200, self._save(res, body)
        if method == "DELETE":
            del self._objects[(res.plural, namespace, name)]
            return 200, current
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method: {method}")

    def _list(self, res: Resource, namespace: str | None, selector: str) -> Obj:
        items = [
            copy.deepcopy(o)
            for (p, ns, _), o in sorted(self._objects.items())
            if p == res.plural
            and (namespace is None or ns == namespace)
            and (not selector or match_labels(selector, o["metadata"].get("labels") or {}))
        ]
        return {
            "kind": f"{res.kind}List",
            "apiVersion": f"{GROUP}/{VERSION}",
            "metadata": {"resourceVersion": "1"},
            "items": items,
        }

    def _create(self, res: Resource, namespace: str, body: Obj) -> Obj:
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = meta.get("name")
        if not name:
            raise bad_request("name or generateName is required")
        if meta.get("namespace", namespace) != namespace:
            raise bad_request("the namespace of the object does not match the namespace on the URL")
        if (res.plural, namespace, name) in self._objects:
            raise already_exists(res, name)
        meta["namespace"] = namespace
        body.pop("status", None)
        self._store(res, body)
        self.tick()
        return copy.deepcopy(self._objects[(res.plural, namespace, name)])

    def _store(self, res: Resource, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        obj["kind"], obj["apiVersion"] = res.kind, f"{GROUP}/{VERSION}"
        meta = obj["metadata"]
        meta.setdefault("namespace", self.namespace)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _stamp(self.now())
        meta["generation"] = 1
        obj.setdefault("spec", {})
        obj.setdefault("status", {})
        return self._save(res, obj)

    def _save(self, res: Resource, obj: Obj) -> Obj:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(int(meta.get("resourceVersion", "0")) + 1)
        self._objects[(res.plural, meta["namespace"], meta["name"])] = obj
        return copy.deepcopy(obj)

    # -- the controller ----------------------------------------------------------------

    def tick(self) -> None:
        """Do what Velero's controllers would have done by now."""
        now = self.now()
        for (plural, _, _), obj in sorted(self._objects.items()):
            if plural == "schedules":
                self._schedule(obj, now)
        for (plural, _, _), obj in sorted(self._objects.items()):
            if plural == "backups":
                self._backup(obj, now)
            elif plural == "restores":
                self._restore(obj, now)
        self._collect_garbage(now)

    def _location(self, name: str) -> Obj | None:
        return self._objects.get(("backupstoragelocations", self.namespace, name or "default"))

    def _duration(self, items: int) -> timedelta:
        seconds = (self.start_seconds + self.seconds_per_item * items) * self.time_scale
        return timedelta(seconds=seconds)

    def _backup(self, obj: Obj, now: datetime) -> None:
        spec, status, name = obj["spec"], obj["status"], obj["metadata"]["name"]
        phase = status.get("phase", "")
        if phase in ("", "New"):
            # backup_controller.go prepareBackupRequest: defaults, then validation
            location_name = spec.get("storageLocation") or "default"
            spec["storageLocation"] = location_name
            ttl = parse_duration(spec.get("ttl") or go_duration(DEFAULT_TTL))
            spec["ttl"] = go_duration(ttl)
            status["expiration"] = _stamp(now + ttl)
            status["version"], status["formatVersion"] = 1, "1.1.2"
            obj["metadata"].setdefault("labels", {})[STORAGE_LOCATION_LABEL] = location_name
            problems = self._location_problems(location_name, spec)
            if problems:
                status.update(phase="FailedValidation", validationErrors=problems)
                return
            items = self._items_of(spec.get("includedNamespaces") or [])
            new = _Plan(started=now, ends=now + self._duration(len(items)), items=items)
            for plural, ns, item in items:
                key = _key(plural, ns, item)
                if key in self.failing_items:
                    new.errors.append(f"{key}: {self.failing_items[key]}")
            new.failure, self.fail_next_backup = self.fail_next_backup, None
            self._plans[("backups", name)] = new
            status.update(
                phase="InProgress",
                startTimestamp=_stamp(now),
                progress={"totalItems": len(items), "itemsBackedUp": 0},
            )
        plan = self._plans.get(("backups", name))
        if status.get("phase") != "InProgress" or plan is None:
            return
        # backup_types.go BackupProgress: best-effort counts while InProgress
        done = self._fraction(plan, now)
        total = len(plan.items)
        status["progress"] = {"totalItems": total, "itemsBackedUp": int(total * done)}
        if done < 1:
            return
        status["completionTimestamp"] = _stamp(plan.ends)
        if plan.failure is not None:
            status.update(phase="Failed", failureReason=plan.failure)
            return
        # backup_controller.go runBackup: errors -> PartiallyFailed, else Completed
        status["progress"]["itemsBackedUp"] = total - len(plan.errors)
        failed = {error.split(": ", 1)[0] for error in plan.errors}
        self._contents[name] = [i for i in plan.items if _key(*i) not in failed]
        if plan.errors:
            status.update(phase="PartiallyFailed", errors=len(plan.errors))
        else:
            status["phase"] = "Completed"

    def _location_problems(self, name: str, spec: Obj) -> list[str]:
        # backup_controller.go prepareBackupRequest: the location checks and their words
        location = self._location(name)
        if location is None:
            return [
                "an existing backup storage location was not specified at backup creation "
                f"time and the default {name} was not found. Please address this issue (see "
                "`velero backup-location -h` for options) and create a new backup. Error: "
                f'backupstoragelocations.velero.io "{name}" not found'
            ]
        problems = []
        if location["spec"].get("accessMode") == "ReadOnly":
            problems.append(
                f"backup can't be created because backup storage location {name} is "
                "currently in read-only mode"
            )
        if location["status"].get("phase") != "Available":
            problems.append(
                f"backup can't be created because BackupStorageLocation {name} is in "
                "Unavailable status."
            )
        return problems

    def _items_of(self, namespaces: list[str]) -> list[tuple[str, str, Obj]]:
        if self.kube is None:
            return []
        found: list[tuple[str, str, Obj]] = []
        for ns in namespaces:
            if self.kube.objects.get("namespaces", None, ns) is None:
                continue
            for plural in CONTENT:
                for item in self.kube.objects.list(plural, ns):
                    found.append((plural, ns, item))
        return found

    def _fraction(self, plan: _Plan, now: datetime) -> float:
        span = (plan.ends - plan.started).total_seconds()
        return 1.0 if span <= 0 else min(1.0, (now - plan.started).total_seconds() / span)

    def _restore(self, obj: Obj, now: datetime) -> None:
        spec, status, name = obj["spec"], obj["status"], obj["metadata"]["name"]
        if status.get("phase", "") in ("", "New"):
            # restore_controller.go validateAndComplete / fetchBackupInfo
            backup = self._objects.get(("backups", self.namespace, spec.get("backupName", "")))
            if backup is None:
                status.update(
                    phase="FailedValidation",
                    validationErrors=[
                        "Error retrieving backup: backups.velero.io "
                        f'"{spec.get("backupName", "")}" not found'
                    ],
                )
                return
            location = self._location(backup["spec"].get("storageLocation", ""))
            if location is None or location["status"].get("phase") != "Available":
                where = backup["spec"].get("storageLocation", "default")
                status.update(
                    phase="FailedValidation",
                    validationErrors=[
                        f"The BSL {where} is unavailable, cannot retrieve the backup"
                    ],
                )
                return
            modifier = spec.get("resourceModifier") or {}
            if modifier and self._modifiers(modifier.get("name", "")) is None:
                # restore_controller.go validateAndComplete: the ConfigMap must exist
                status.update(
                    phase="FailedValidation",
                    validationErrors=[
                        "failed to get resource modifiers configmap "
                        f"{self.namespace}/{modifier.get('name', '')}"
                    ],
                )
                return
            items = self._contents.get(backup["metadata"]["name"])
            new = _Plan(started=now, ends=now + self._duration(len(items or [])), items=items or [])
            if items is None:
                # the backup's tarball is not in object storage yet: the download fails
                new.failure = (
                    f"error downloading backup: backup {backup['metadata']['name']} has no "
                    f"contents in object storage (phase {backup['status'].get('phase')})"
                )
            self._plans[("restores", name)] = new
            status.update(
                phase="InProgress",
                startTimestamp=_stamp(now),
                progress={"totalItems": len(new.items), "itemsRestored": 0},
            )
        plan = self._plans.get(("restores", name))
        if status.get("phase") != "InProgress" or plan is None:
            return
        done = self._fraction(plan, now)
        total = len(plan.items)
        status["progress"] = {"totalItems": total, "itemsRestored": int(total * done)}
        if done < 1:
            return
        status["completionTimestamp"] = _stamp(plan.ends)
        if plan.failure is not None:
            status.update(phase="Failed", failureReason=plan.failure)
            return
        # restore_controller.go runValidatedRestore: errors -> PartiallyFailed; warnings
        # are counted in status.warnings, the details stay in the restore's results file
        restored = self._write(plan, spec)
        status["progress"]["itemsRestored"] = restored
        if plan.warnings:
            status["warnings"] = len(plan.warnings)
        if plan.errors:
            status.update(phase="PartiallyFailed", errors=len(plan.errors))
        else:
            status["phase"] = "Completed"

    def _write(self, plan: _Plan, spec: Obj) -> int:
        """Put the backed-up objects back (pkg/restore/restore.go restoreItem)."""
        assert self.kube is not None
        kube = self.kube
        mapping: dict[str, str] = spec.get("namespaceMapping") or {}
        update = spec.get("existingResourcePolicy") == "update"
        restored = 0
        for plural, ns, item in plan.items:
            target = mapping.get(ns, ns)
            res = resource(plural)
            name = item["metadata"]["name"]
            key = f"{plural}/{target}/{name}"
            if key in self.failing_items:
                plan.errors.append(f"{key}: {self.failing_items[key]}")
                continue
            if kube.objects.get("namespaces", None, target) is None:
                kube._create(resource("namespaces"), "", {"metadata": {"name": target}})
            body = copy.deepcopy(item)
            meta = body["metadata"]
            for drop in ("uid", "resourceVersion", "creationTimestamp", "generation"):
                meta.pop(drop, None)
            meta["namespace"] = target
            meta.setdefault("labels", {})["velero.io/restore-name"] = spec.get("backupName", "")
            body.pop("status", None)
            self._modify(res, body, spec.get("resourceModifier") or {})
            current = kube.objects.get(plural, target, name)
            try:
                if current is None:
                    kube._create(res, target, body)
                elif update:
                    meta["resourceVersion"] = current["metadata"]["resourceVersion"]
                    kube._replace(res, target, name, body)
                else:
                    plan.warnings.append(
                        f'could not restore, {res.kind} "{name}" already exists. Warning: the '
                        "in-cluster version is different than the backed-up version"
                    )
                    continue
            except ApiError as error:
                plan.errors.append(f"{key}: {error.message}")
                continue
            if key in self.warning_items:
                plan.warnings.append(f"{key}: {self.warning_items[key]}")
            restored += 1
        return restored

    def _modifiers(self, name: str) -> list[Obj] | None:
        """The rules of a resource modifiers ConfigMap in Velero's namespace (internal/
        resourcemodifiers/resource_modifiers.go: one data key holding YAML)."""
        if self.kube is None or not name:
            return None
        found = self.kube.objects.get("configmaps", self.namespace, name)
        if found is None or len(found.get("data") or {}) != 1:
            return None
        parsed = yaml.safe_load(next(iter(found["data"].values()))) or {}
        rules: list[Obj] = parsed.get("resourceModifierRules") or []
        return rules

    def _modify(self, res: Resource, body: Obj, modifier: Obj) -> None:
        """Apply the rules whose groupResource and resourceNameRegex match; this controller
        knows ``mergePatches`` (json_merge_patch.go), not JSON or strategic patches."""
        for rule in self._modifiers(modifier.get("name", "")) or []:
            conditions = rule.get("conditions") or {}
            if conditions.get("groupResource") != res.qualified:
                continue
            pattern = conditions.get("resourceNameRegex") or ".*"
            if not re.fullmatch(pattern, body["metadata"]["name"]):
                continue
            for patch in rule.get("mergePatches") or []:
                merged = merge_patch(body, json.loads(patch.get("patchData") or "{}"))
                body.clear()
                body.update(merged)

    def _schedule(self, obj: Obj, now: datetime) -> None:
        # schedule_controller.go: parse the cron (FailedValidation if it does not), run at
        # once unless skipImmediately, then when due: getBackup -> TimestampedName
        spec, status = obj["spec"], obj["status"]
        try:
            period, at = cron_interval(spec.get("schedule", ""))
        except ValueError as exc:
            status.update(phase="FailedValidation", validationErrors=[str(exc)])
            return
        status["phase"] = "Enabled"
        if spec.get("paused"):
            return
        last = status.get("lastBackup")
        if last is None:
            if spec.get("skipImmediately"):
                status["lastSkipped"] = _stamp(now)
                status["lastBackup"] = _stamp(now)
                return
            due = now
        else:
            due = _parse_stamp(last) + period
            if at is not None:
                due = due.replace(hour=at[0], minute=at[1], second=0)
                if due <= _parse_stamp(last):
                    due += period
        if due > now:
            return
        name = f"{obj['metadata']['name']}-{due:%Y%m%d%H%M%S}"
        labels = {**(spec["template"].get("metadata", {}).get("labels") or {})}
        labels[SCHEDULE_LABEL] = obj["metadata"]["name"]
        template = {k: v for k, v in spec.get("template", {}).items() if k != "metadata"}
        if (BACKUPS.plural, self.namespace, name) not in self._objects:
            self._store(
                BACKUPS,
                {"metadata": {"name": name, "labels": labels}, "spec": copy.deepcopy(template)},
            )
        status["lastBackup"] = _stamp(due)

    def _collect_garbage(self, now: datetime) -> None:
        # gc_controller.go: expired backups go, unless their location forbids it
        for key, obj in list(self._objects.items()):
            if key[0] != "backups":
                continue
            expiration = obj["status"].get("expiration")
            if expiration is None or _parse_stamp(expiration) > now:
                continue
            if obj["status"].get("phase") == "InProgress":
                continue
            location = self._location(obj["spec"].get("storageLocation", ""))
            failure = None
            if location is None:
                failure = "BSLNotFound"
            elif location["spec"].get("accessMode") == "ReadOnly":
                failure = "BSLReadOnly"
            elif location["status"].get("phase") != "Available":
                failure = "BSLUnavailable"
            if failure is not None:
                obj["metadata"].setdefault("labels", {})[GC_FAILURE_LABEL] = failure
                continue
            del self._objects[key]
            self._contents.pop(key[2], None)


def _key(plural: str, namespace: str, item: Obj) -> str:
    return f"{plural}/{namespace}/{item['metadata']['name']}"


async def _body(request: web.Request) -> Obj:
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


__all__ = ["VeleroStandIn", "cron_interval", "go_duration", "parse_duration"]
