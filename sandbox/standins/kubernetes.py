"""A Kubernetes API server stand-in over HTTP, honest about the parts the bot relies on.

The official ``kubernetes`` Python client and kubectl talk to it unchanged, through a
kubeconfig whose cluster is ``standin.kubeconfig_cluster()`` (the HTTPS URL and the CA made
at start as ``certificate-authority-data``) and whose user has a bearer token (``token``, an
admin; or ``users``, token -> identity). It stores objects in memory, answers as the API
server documents, and runs a small deployment controller.

Split by responsibility: ``kubernetes_tls`` (HTTPS: a CA made at start, why kubectl needs
it), ``kubernetes_rbac`` (tokens to identities, the RBAC authorizer over the shipped
ClusterRoles, the 403's wording, SelfSubjectAccessReview), ``kubernetes_watch``
(``?watch=true`` streams). Conformance: ``tests/standins/test_kubernetes_standin.py``,
``test_kubernetes_namespaces.py`` (the Python client) and ``test_kubectl_oracle.py``
(Debian's kubectl as the oracle).

What it does as the real API server does:

- Paths: ``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...`` for the
  others; ``namespaces/<ns>/<plural>[/<name>]`` for namespaced resources, and
  ``<plural>`` alone to list a namespaced resource across all namespaces.
- Resources: namespaces (cluster-scoped); serviceaccounts, resourcequotas, limitranges,
  configmaps, secrets (core v1); networking.k8s.io/v1 networkpolicies;
  rbac.authorization.k8s.io/v1 rolebindings; apps/v1 deployments and replicasets.
  authorization.k8s.io/v1 selfsubjectaccessreviews (create: ``kubectl auth can-i``).
  Discovery (``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>/<v>``) with each
  resource's ``shortNames`` (``kubectl get deploy``, ``get rs``: the REST storages'
  ``ShortNames()``, e.g. kubernetes ``pkg/registry/apps/deployment/storage/storage.go``)
  and ``watch`` among its verbs; no OpenAPI document (``kubectl create -f`` needs
  ``--validate=false``).
- HTTPS only (by default), with a CA made at start; ``tls=False`` serves plain HTTP.
- Authentication and RBAC (``kubernetes_rbac``): an unknown or missing token is 401; with
  a ``policy``, a request its roles do not allow is 403 Forbidden worded as the API server
  words it. Every request is recorded with the identity that made it.
- Watches (``kubernetes_watch``): ``?watch=true`` on a list path streams JSON watch events
  from ``resourceVersion`` (enough for client-go's reflector: ``kubectl rollout status``,
  ``kubectl get -w``).
- Bodies are JSON: a protobuf or CBOR body is 415 UnsupportedMediaType (recent kubectl
  releases send typed creates as protobuf; Debian's sends JSON).
- Object metadata set by the server: ``uid``, ``resourceVersion`` (one counter for the
  whole store, as a string), ``creationTimestamp`` (RFC 3339, seconds), ``generation``
  (for kinds with a spec the server tracks: bumped when ``spec`` changes), ``namespace``.
- Status codes: 201 on create, 200 on get, list, replace, patch and delete.
- Errors are ``Status`` objects: ``{"kind": "Status", "apiVersion": "v1", "metadata": {},
  "status": "Failure", "message", "reason", "details": {"name", "group", "kind"},
  "code"}``, with the reasons and messages the server uses: NotFound 404
  (``deployments.apps "web" not found``; a create in a namespace that does not exist is
  ``namespaces "x" not found``), AlreadyExists 409, Conflict 409 on a replace with a
  stale ``metadata.resourceVersion`` ("the object has been modified; please apply your
  changes to the latest version and try again"), Invalid 422 (names must be DNS-1123
  labels for namespaces, DNS-1123 subdomains otherwise; ``details.causes`` lists the
  fields), BadRequest 400 (a bad label selector, a body whose name or namespace differs
  from the path), Unauthorized 401 (wrong or missing bearer token, when one is set).
- Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x,y)``, ``a``,
  ``!a``, joined by commas (AND). ``fieldSelector`` on ``metadata.name`` and
  ``metadata.namespace`` (``=``, ``==``, ``!=``).
- Secrets: ``stringData`` is merged into ``data`` (base64) on write, as the server does.
- Deleting a Deployment deletes the ReplicaSets it owns (the garbage collector's
  background propagation).
- Namespaces live and die as the API server and the namespace controller make them: a new
  one gets ``spec.finalizers: ["kubernetes"]`` and ``status.phase: Active``. Deleting one
  answers 200 with the Namespace, now with ``deletionTimestamp`` and phase ``Terminating``
  (a second DELETE answers the same); it stays until its content is gone and its
  finalizers are done. ``namespace_deletion_seconds`` later the namespace controller
  deletes everything in it, sets the five deletion conditions
  (``NamespaceContentRemaining`` "Some resources are remaining: configmaps. has 1 resource
  instances", ``NamespaceFinalizersRemaining`` "Some content in the namespace has
  finalizers remaining: example.com/hold in 1 resource instances", or their "All content
  ..." forms), and once nothing is left takes ``kubernetes`` out of ``spec.finalizers``;
  with no finalizers left the namespace is gone. Other ``spec.finalizers`` wait for
  ``PUT /api/v1/namespaces/<name>/finalize``. Meanwhile creating anything in it is 403
  Forbidden ``configmaps "x" is forbidden: unable to create new content in namespace <ns>
  because it is being terminated`` (``details.causes``: ``NamespaceTerminating``), and
  creating the namespace again is 409 ``object is being deleted: namespaces "<ns>" already
  exists``. Any object with ``metadata.finalizers`` is only marked (``deletionTimestamp``)
  by a DELETE, and goes when an update takes its last finalizer away.
- RoleBindings: ``roleRef`` cannot change on update (422 Invalid, "cannot change
  roleRef"), as kubernetes ``pkg/apis/rbac/validation/validation.go``
  (ValidateRoleBindingUpdate) refuses it.

The deployment controller (``apps/v1``): when a Deployment is created or its
``spec.template`` changes, it creates a ReplicaSet owned by the Deployment
(``ownerReferences`` with ``controller: true``), named ``<deployment>-<pod-template-hash>``,
with the ``pod-template-hash`` label added to its selector and template, and annotated
``deployment.kubernetes.io/revision`` = the next revision. A template identical to an old
ReplicaSet's reuses it and bumps its revision, as ``kubectl rollout undo`` does (the old
number is kept in ``deployment.kubernetes.io/revision-history``). The Deployment's own
annotations (``kubernetes.io/change-cause`` among them) are copied to the new ReplicaSet,
except the controller's own keys and ``kubectl.kubernetes.io/last-applied-configuration``;
``deployment.kubernetes.io/desired-replicas`` and ``max-replicas`` are set too. The
Deployment gets ``deployment.kubernetes.io/revision`` = its newest ReplicaSet's revision.
The controller lags as the real one does: it sees a Deployment's new generation
``observe_seconds`` after the write (0 for at once), so meanwhile ``status`` is the previous
generation's: ``observedGeneration`` below ``metadata.generation``, and a stale
``Progressing=False/ProgressDeadlineExceeded`` stays until the new generation is observed
(what kubectl ``pkg/polymorphichelpers/rollout_status.go`` guards against). Templates
are matched to ReplicaSets as decoded objects (``EqualIgnoreHash`` in the controller's
``util/deployment_util.go``): a null or an empty object is the same as no field.
Status then progresses over ``rollout_seconds``: ``observedGeneration``, ``replicas``,
``updatedReplicas``, ``readyReplicas``, ``availableReplicas``, ``unavailableReplicas``,
and conditions ``Progressing`` (NewReplicaSetCreated / FoundNewReplicaSet, then
ReplicaSetUpdated, then NewReplicaSetAvailable) and ``Available``
(MinimumReplicasAvailable / MinimumReplicasUnavailable). Old ReplicaSets are scaled to 0
when the new one is available. An image in ``failing_images`` (the whole reference, or
just its tag) never becomes ready: the old ReplicaSets keep their pods, and after the
progress deadline ``Progressing`` turns False with reason ProgressDeadlineExceeded.

Simplified, on purpose (tests that need more should extend the stand-in):

- PATCH: ``application/merge-patch+json`` is RFC 7386. ``application/strategic-merge-patch
  +json`` is treated as a JSON merge patch, except that a list of objects that all carry
  ``name`` is merged item by item by ``name`` (the ``patchMergeKey`` of containers, env,
  volumes, ...); ``$patch`` directives and other merge keys are not understood.
  ``application/json-patch+json`` (RFC 6902: add, remove, replace, test) is supported.
  Server-side apply is not.
- No pagination (``limit``/``continue`` ignored),
  no ``dryRun``, no admission, no schema validation beyond names and a Deployment's
  selector; no Pods: ReplicaSet status is made up by the controller.
- Rollouts are not rolling: the new ReplicaSet gets all desired replicas at once and the
  old ones are scaled to 0 together when it is ready (maxSurge only feeds the
  ``max-replicas`` annotation; maxUnavailable, default 25%, only decides ``Available``).
- Deleting returns a ``Status`` with ``status: Success`` (a namespace, or an object held by
  finalizers: the object), and the object is gone at once (no grace period).
- The progress deadline is ``spec.progressDeadlineSeconds`` (default 600) times
  ``time_scale``, unless ``progress_deadline_seconds`` overrides it.

Sources:

- API concepts (verbs, status codes, resourceVersion, 409 Conflict, list kinds):
  https://kubernetes.io/docs/reference/using-api/api-concepts/
- Status objects and reasons: https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/status/
  and the StatusReason constants (``AlreadyExists`` 409, ``NotFound`` 404, ``Invalid`` 422,
  ``Conflict`` 409), e.g. as documented in kube_core::response::reason
  (https://dev.materialize.com/api/rust/kube_core/response/reason/constant.ALREADY_EXISTS.html)
- ObjectMeta (uid, resourceVersion, generation, creationTimestamp):
  https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/object-meta/
- Names (DNS-1123 label and subdomain):
  https://kubernetes.io/docs/concepts/overview/working-with-objects/names/
- Label selectors: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/
- Deployments, rollout history, change-cause, progress deadline and conditions:
  https://kubernetes.io/docs/concepts/workloads/controllers/deployment/ and the
  controller's pkg/controller/deployment/progress.go and util/deployment_util.go
  (https://github.com/kubernetes/kubernetes/blob/v1.29.0-alpha.1/pkg/controller/deployment/progress.go)
- PATCH content types: https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/
- Namespace lifecycle: kubernetes ``pkg/registry/core/namespace/strategy.go`` (the
  ``kubernetes`` finalizer and phase Active on create; status and finalizers kept on
  update), ``pkg/registry/core/namespace/storage/storage.go`` (Delete: deletionTimestamp,
  phase Terminating, the object returned, deleted only once ``spec.finalizers`` is empty;
  the ``finalize`` subresource), ``pkg/controller/namespace/deletion/
  namespaced_resources_deleter.go`` (delete all content, then remove the ``kubernetes``
  finalizer, then delete) and ``status_condition_utils.go`` (the conditions and their
  messages), ``staging/src/k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle/
  admission.go`` (the 403 and its ``NamespaceTerminating`` cause),
  ``staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go`` ("object is
  being deleted: ..." on create; an object with finalizers is only marked by a delete, and
  removed by the update that empties them). https://kubernetes.io/docs/concepts/overview/
  working-with-objects/finalizers/ and .../namespaces/.
- Assumed: messages of BadRequest answers and of the ``fail_next`` Status bodies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import re
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from sandbox.standins._server import LoopbackServer
from sandbox.standins.kubernetes_rbac import (
    ADMIN,
    Attributes,
    Identity,
    Policy,
    forbidden,
    review,
    verb_of,
)
from sandbox.standins.kubernetes_tls import ServingCertificate, make_serving_certificate
from sandbox.standins.kubernetes_watch import Expired, WatchHub, WatchRequested

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
_NOT_COPIED = frozenset(
    {
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)

Obj = dict[str, Any]
ObjList = list[Obj]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    tracks_generation: bool = False
    short_names: tuple[str, ...] = ()
    """Discovery's ``shortNames`` (``kubectl get deploy``): the API server's own, from each
    resource's REST storage (``ShortNames()``, e.g. kubernetes ``pkg/registry/apps/
    deployment/storage/storage.go``: ``deploy``)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How the server names the resource in messages: ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", namespaced=True, short_names=("sa",)),
    Resource("", "v1", "resourcequotas", "ResourceQuota", namespaced=True, short_names=("quota",)),
    Resource("", "v1", "limitranges", "LimitRange", namespaced=True, short_names=("limits",)),
    Resource("", "v1", "configmaps", "ConfigMap", namespaced=True, short_names=("cm",)),
    Resource("", "v1", "secrets", "Secret", namespaced=True),
    Resource(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        namespaced=True,
        tracks_generation=True,
        short_names=("netpol",),
    ),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", namespaced=True),
    # Ingress is networking.k8s.io/v1, namespaced, with metadata.generation bumped on spec
    # changes (https://kubernetes.io/docs/reference/kubernetes-api/service-resources/ingress-v1/,
    # kubernetes pkg/registry/networking/ingress/strategy.go PrepareForUpdate); stored as sent.
    Resource(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "Ingress",
        namespaced=True,
        tracks_generation=True,
        short_names=("ing",),
    ),
    Resource(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        namespaced=True,
        tracks_generation=True,
        short_names=("deploy",),
    ),
    Resource(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        namespaced=True,
        tracks_generation=True,
        short_names=("rs",),
    ),
)
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_NAMESPACES = RESOURCES[0]
_DEPLOYMENTS = _BY_PATH[("apps", "v1", "deployments")]
_REPLICASETS = _BY_PATH[("apps", "v1", "replicasets")]
_ROLEBINDINGS = _BY_PATH[("rbac.authorization.k8s.io", "v1", "rolebindings")]
_REVIEWS = ("authorization.k8s.io", "v1", "selfsubjectaccessreviews")
"""SelfSubjectAccessReview: create only (``kubectl auth can-i``)."""

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_RE = re.compile(_LABEL)
_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_LABEL}')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. "
    "'example.com', regex used for validation is "
    rf"'{_LABEL}(\.{_LABEL})*')"
)


def resource(kind_or_plural: str) -> Resource:
    """The resource by kind (``Deployment``) or plural (``deployments``), any case."""
    wanted = kind_or_plural.lower()
    for res in RESOURCES:
        if wanted in (res.kind.lower(), res.plural):
            return res
    raise KeyError(f"the stand-in serves no resource {kind_or_plural!r}")


# --- answers -------------------------------------------------------------------------


class ApiError(Exception):
    """An answer other than success, as a Kubernetes ``Status``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: Obj | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(res: Resource, name: str) -> Obj:
    details: Obj = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return details


def not_found(res: Resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def already_exists(res: Resource, name: str) -> ApiError:
    message = f'{res.qualified} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, _details(res, name))


def conflict(res: Resource, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, _details(res, name))


def invalid(res: Resource, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """``causes``: (field, message) pairs, as in ``details.causes``."""
    text = ", ".join(f"{field}: {msg}" for field, msg in causes)
    details: Obj = {
        "name": name,
        "kind": res.kind,
        "causes": [
            {"reason": "FieldValueInvalid", "message": msg, "field": field} for field, msg in causes
        ],
    }
    if res.group:
        details["group"] = res.group
    return ApiError(422, "Invalid", f'{res.kind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


# --- what the stand-in records --------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    status: int
    user: str = ""
    """Who the bearer token was ("" when it was refused)."""


@dataclass
class _Failure:
    method: str
    path_prefix: str
    status: int
    times: int


class ObjectStore:
    """The stored objects, for tests to look at (copies; changing them changes nothing)."""

    def __init__(self, on_change: Callable[[str, Resource, str, Obj], None] | None = None) -> None:
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._on_change = on_change
        """Told of every ADDED, MODIFIED and DELETED object (the watches)."""

    def _tell(self, kind: str, res: Resource, namespace: str, obj: Obj) -> None:
        if self._on_change is not None:
            self._on_change(kind, res, namespace, obj)

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        """One object by kind or plural, namespace (None for namespaces) and name."""
        found = self._objects.get((resource(kind).plural, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, kind: str, namespace: str | None = None) -> ObjList:
        """All objects of a kind, in one namespace or (None) all of them, by name."""
        plural = resource(kind).plural
        found = [
            obj
            for (p, ns, _), obj in sorted(self._objects.items())
            if p == plural and (namespace is None or ns == namespace)
        ]
        return copy.deepcopy(found)

    # for the server

    def _get(self, res: Resource, namespace: str, name: str) -> Obj | None:
        return self._objects.get((res.plural, namespace, name))

    def _put(self, res: Resource, namespace: str, obj: Obj) -> None:
        key = (res.plural, namespace, obj["metadata"]["name"])
        kind = "MODIFIED" if key in self._objects else "ADDED"
        self._objects[key] = obj
        self._tell(kind, res, namespace, obj)

    def _delete(self, res: Resource, namespace: str, name: str) -> Obj | None:
        obj = self._objects.pop((res.plural, namespace, name), None)
        if obj is not None:
            self._tell("DELETED", res, namespace, obj)
        return obj

    def _all(self, res: Resource, namespace: str | None) -> ObjList:
        return [
            obj
            for (p, ns, _), obj in sorted(self._objects.items())
            if p == res.plural and (namespace is None or ns == namespace)
        ]

    def _drop_namespace(self, namespace: str) -> None:
        for plural, ns, name in [k for k in self._objects if k[1] == namespace]:
            self._delete(resource(plural), ns, name)


# --- label selectors ------------------------------------------------------------------

_REQUIREMENT = re.compile(
    r"^\s*(?P<not>!)?\s*(?P<key>[A-Za-z0-9./_-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)"
    r"|\s(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?\s*$"
)


def _split_selector(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def match_labels(selector: str, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector string; BadRequest if it does not parse."""
    for part in _split_selector(selector):
        m = _REQUIREMENT.match(part)
        if m is None or (m["not"] and (m["op"] or m["setop"])):
            raise bad_request(f"unable to parse requirement: {part.strip()!r}")
        key = m["key"]
        if m["not"]:
            ok = key not in labels
        elif m["op"] in ("=", "=="):
            ok = labels.get(key) == m["value"]
        elif m["op"] == "!=":
            ok = labels.get(key) != m["value"]
        elif m["setop"]:
            values = {v.strip() for v in m["values"].split(",")}
            ok = labels.get(key) in values if m["setop"] == "in" else labels.get(key) not in values
        else:
            ok = key in labels
        if not ok:
            return False
    return True


def _match_fields(selector: str, obj: Obj) -> bool:
    meta = obj.get("metadata", {})
    fields = {"metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace")}
    for part in _split_selector(selector):
        m = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(\S*)\s*$", part)
        if m is None or m[1] not in fields:
            raise bad_request(f'"{part.strip()}" is not a known field selector')
        equal = (fields[m[1]] or "") == m[3]
        if equal != (m[2] != "!="):
            return False
    return True


# --- patches --------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any, *, by_name: bool = False) -> Any:
    """RFC 7386 JSON merge patch; ``by_name`` merges lists of named objects item by item."""
    named_lists = by_name and isinstance(patch, list) and isinstance(target, list)
    if named_lists and all(isinstance(i, dict) and "name" in i for i in [*patch, *target]):
        merged = {item["name"]: item for item in copy.deepcopy(target)}
        for item in patch:
            merged[item["name"]] = merge_patch(merged.get(item["name"]), item, by_name=True)
        return list(merged.values())
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, by_name=by_name)
    return result


def json_patch(target: Obj, ops: list[Any]) -> Obj:
    """RFC 6902 add, remove, replace and test."""
    doc: Any = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "path" not in op:
            raise bad_request("json patch: each operation needs op and path")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        parent: Any = doc
        try:
            for token in tokens[:-1]:
                parent = parent[int(token)] if isinstance(parent, list) else parent[token]
            last = tokens[-1]
            kind = op.get("op")
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(index, op["value"])
                elif kind == "remove":
                    parent.pop(index)
                elif kind == "replace":
                    parent[index] = op["value"]
                elif kind == "test":
                    if parent[index] != op["value"]:
                        raise ApiError(422, "Invalid", "json patch: test operation failed")
                else:
                    raise bad_request(f"json patch: unsupported op {kind!r}")
            elif kind in ("add", "replace"):
                if kind == "replace" and last not in parent:
                    raise KeyError(last)
                parent[last] = op["value"]
            elif kind == "remove":
                del parent[last]
            elif kind == "test":
                if parent[last] != op["value"]:
                    raise ApiError(422, "Invalid", "json patch: test operation failed")
            else:
                raise bad_request(f"json patch: unsupported op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(
                422, "Invalid", f"the server rejected our request: missing path {op['path']}"
            ) from None
    if not isinstance(doc, dict):
        raise bad_request("json patch: the result is not an object")
    return doc


# --- the server -----------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubernetesStandIn(LoopbackServer):
    """The Kubernetes API for a handful of resources, with a deployment controller."""

    service = "Kubernetes stand-in"

    def __init__(
        self,
        *,
        token: str | None = None,
        rollout_seconds: float = 0.3,
        failing_images: Iterable[str] = (),
        time_scale: float = 1.0,
        progress_deadline_seconds: float | None = None,
        namespace_deletion_seconds: float = 0.2,
        observe_seconds: float = 0.1,
        users: Mapping[str, Identity] | None = None,
        policy: Policy | None = None,
        tls: bool = True,
    ) -> None:
        super().__init__()
        self.users: dict[str, Identity] = dict(users or {})
        """Bearer token -> identity (a static token file). ``token`` alone is an admin."""
        if token is not None and token not in self.users:
            self.users[token] = ADMIN
        self.policy = policy
        """The RBAC objects that authorize requests; None allows every authenticated one."""
        self.tls = tls
        self.certificate: ServingCertificate | None = None
        self.ca_file: Path | None = None
        """With ``tls``: the CA in a PEM file, for clients that take a path
        (``kubernetes.client.Configuration.ssl_ca_cert``)."""
        """With ``tls``: the CA made at start (``kubeconfig_cluster()`` carries it)."""
        self.watches = WatchHub()
        self.observe_seconds = observe_seconds
        """How long the deployment controller takes to see a Deployment's new generation."""
        self._observing: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.namespace_deletion_seconds = namespace_deletion_seconds
        """How long the namespace controller takes to empty and finalize a deleted namespace."""
        self._terminations: dict[str, asyncio.Task[None]] = {}
        self.token = token
        self.rollout_seconds = rollout_seconds
        self.failing_images: set[str] = set(failing_images)
        """Images that never become ready: a whole reference (``app:2``) or a tag (``2``)."""
        self.time_scale = time_scale
        self.progress_deadline_seconds = progress_deadline_seconds
        self.objects = ObjectStore(on_change=self._changed)
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._resource_version = 0
        self._rollouts: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.velero: Any = None
        """Velero's API (sandbox.standins.velero.VeleroStandIn.install), when installed."""

    # lifecycle

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._handle)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        self.certificate = make_serving_certificate()
        scratch = tempfile.mkdtemp(prefix="kube-standin-ca-")
        self.ca_file = Path(scratch) / "ca.crt"
        self.ca_file.write_text(self.certificate.ca_pem)
        return self.certificate.server

    def kubeconfig_cluster(self) -> Obj:
        """This server as a kubeconfig ``cluster`` entry: its URL and, with TLS, its CA."""
        cluster: Obj = {"server": self.url}
        if self.certificate is not None:
            cluster["certificate-authority-data"] = self.certificate.ca_data
        return cluster

    def client_ssl(self) -> ssl.SSLContext | bool:
        """What an aiohttp client passes as ``ssl=`` to trust this server."""
        return self.certificate.client_context() if self.certificate is not None else True

    def _changed(self, kind: str, res: Resource, namespace: str, obj: Obj) -> None:
        if kind == "DELETED":  # a deletion is a change with its own resourceVersion
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": self._bump()}}
        self.watches.publish(kind, res.plural, namespace, obj)

    async def before_stop(self) -> None:
        self.watches.close_all()
        if self.ca_file is not None:
            shutil.rmtree(self.ca_file.parent, ignore_errors=True)
        for task in [*self._terminations.values(), *self._observing.values()]:
            task.cancel()
        for task in self._rollouts.values():
            task.cancel()
        for task in list(self._rollouts.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._rollouts.clear()

    @property
    def url(self) -> str:
        return self.base_url

    # for tests

    def fail_next(self, method: str, path_prefix: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` ``method`` requests under ``path_prefix`` with ``status``.

        The body is a Status with the reason the server uses for that code (a 429 also
        carries ``Retry-After: 1``). ``method`` ``"*"`` matches any method.
        """
        self._failures.append(_Failure(method.upper(), path_prefix, status, times))

    async def wait_for(
        self,
        kind: str,
        namespace: str | None,
        name: str,
        predicate: Callable[[Obj], bool],
        within: float = 5.0,
    ) -> Obj:
        """Poll the store until ``predicate(obj)`` holds; TimeoutError otherwise."""
        async with asyncio.timeout(within):
            while True:
                obj = self.objects.get(kind, namespace, name)
                if obj is not None and predicate(obj):
                    return obj
                await asyncio.sleep(0.01)

    # HTTP

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        status = 200
        headers: dict[str, str] = {}
        who: Identity | None = None
        try:
            who = self._authenticate(request)
            self._inject_failure(request)
            status, body = await self._route(request, who)
        except WatchRequested as watch:
            labels = request.query.get("labelSelector", "")
            fields = request.query.get("fieldSelector", "")
            user = who.user if who else ""
            try:
                streamed = await self.watches.stream(
                    request, watch, lambda obj: _selected(obj, labels, fields)
                )
            except Expired as expired:
                error = ApiError(410, "Expired", f"too old resource version: {expired}")
                self.requests.append(
                    RecordedRequest(request.method, request.path, request.query_string, 410, user)
                )
                return web.json_response(error.body(), status=410)
            self.requests.append(
                RecordedRequest(request.method, request.path, request.query_string, 200, user)
            )
            return streamed
        except ApiError as error:
            status, body, headers = error.code, error.body(), error.headers
        self.requests.append(
            RecordedRequest(
                request.method, request.path, request.query_string, status, who.user if who else ""
            )
        )
        return web.json_response(body, status=status, headers=headers)

    def _authenticate(self, request: web.Request) -> Identity:
        """The bearer token's identity (401 for a wrong or missing one, when tokens are set)."""
        if not self.users:
            return ADMIN
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        who = self.users.get(token.strip()) if scheme.lower() == "bearer" else None
        if who is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return who

    def _authorize(self, who: Identity, attrs: Attributes) -> None:
        """403 Forbidden, worded as the API server does, when the policy does not allow it."""
        if self.policy is None or self.policy.allows(who, attrs):
            return
        message, details = forbidden(who, attrs)
        raise ApiError(403, "Forbidden", message, details)

    def _inject_failure(self, request: web.Request) -> None:
        for failure in self._failures:
            if failure.method in ("*", request.method) and request.path.startswith(
                failure.path_prefix
            ):
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                reason = _REASONS.get(failure.status, "InternalError")
                headers = {"Retry-After": "1"} if failure.status == 429 else {}
                message = f"injected failure: {reason}"
                raise ApiError(failure.status, reason, message, headers=headers)

    async def _route(self, request: web.Request, who: Identity) -> tuple[int, Obj]:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:
            return 200, {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0-standin",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2024-08-13T00:00:00Z",
                "goVersion": "go1.22.5",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if parts == ["api"]:
            return 200, {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}
                ],
            }
        if parts == ["apis"]:
            return 200, self._group_list()
        if self.velero is not None and parts[:2] == ["apis", "velero.io"]:
            return await self.velero.route(request, parts[2:])  # type: ignore[no-any-return]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return 200, self._resource_list(group, version)
        if (group, version, *rest) == _REVIEWS:
            if request.method != "POST":
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")
            return 201, review(who, self.policy, await _json_body(request))
        namespace: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and rest[2:] not in (["finalize"], ["status"])
        ):
            namespace, rest = rest[1], rest[2:]
        res = _BY_PATH.get((group, version, rest[0]))
        if res is None or (namespace is not None and not res.namespaced) or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) >= 2 else None
        subresource = rest[2] if len(rest) == 3 else None
        finalizing = res is _NAMESPACES and subresource == "finalize" and request.method == "PUT"
        if (
            subresource is not None
            and not finalizing
            and (subresource != "status" or request.method != "GET")
        ):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and namespace is None and (name is not None or request.method != "GET"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = namespace or ""
        method = request.method
        watching = request.query.get("watch") in ("true", "1")
        self._authorize(
            who,
            Attributes(
                verb=verb_of(method, named=name is not None, watch=watching),
                group=group,
                resource=res.plural,
                subresource=subresource or "",
                namespace=ns if res.namespaced else "",
                name=name or "",
            ),
        )
        if res is _NAMESPACES and name and subresource == "finalize" and method == "PUT":
            return 200, self._finalize(name, await _json_body(request))
        if name is None:
            if method == "GET":
                return 200, self._list(res, namespace, request)
            if method == "POST":
                return 201, self._create(res, ns, await _json_body(request))
        elif method == "GET":
            return 200, self._read(res, ns, name)
        elif method == "PUT":
            return 200, self._replace(res, ns, name, await _json_body(request))
        elif method == "PATCH":
            return 200, await self._patch(res, ns, name, request)
        elif method == "DELETE":
            return 200, self._remove(res, ns, name)
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method: {method}")

    def _group_list(self) -> Obj:
        groups = sorted({(r.group, r.version) for r in RESOURCES if r.group} | {_REVIEWS[:2]})
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [
                {
                    "name": g,
                    "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                    "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                }
                for g, v in groups
            ]
            + ([self.velero.group()] if self.velero is not None else []),
        }

    def _resource_list(self, group: str, version: str) -> Obj:
        found = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
        if not found and (group, version) != _REVIEWS[:2]:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    **({"shortNames": list(r.short_names)} if r.short_names else {}),
                }
                for r in found
            ]
            + (
                [
                    {
                        "name": "selfsubjectaccessreviews",
                        "singularName": "selfsubjectaccessreview",
                        "namespaced": False,
                        "kind": "SelfSubjectAccessReview",
                        "verbs": ["create"],
                    }
                ]
                if (group, version) == _REVIEWS[:2]
                else []
            ),
        }

    # the verbs

    def _list(self, res: Resource, namespace: str | None, request: web.Request) -> Obj:
        labels = request.query.get("labelSelector", "")
        fields = request.query.get("fieldSelector", "")
        found = [o for o in self.objects._all(res, namespace) if _selected(o, labels, fields)]
        if request.query.get("watch") in ("true", "1"):
            raise WatchRequested(res.plural, namespace, copy.deepcopy(found))
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in found]
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(self._resource_version)},
            "items": copy.deepcopy(items),
        }

    def _read(self, res: Resource, ns: str, name: str) -> Obj:
        obj = self.objects._get(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        return copy.deepcopy(obj)

    def _create(self, res: Resource, ns: str, body: Obj) -> Obj:
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = str(meta.get("name") or "")
        self._check_namespace_matches(res, ns, meta)
        self._admit_namespace(res, ns, name)
        self._validate(res, name, body)
        existing = self.objects._get(res, ns, name)
        if existing is not None:
            error = already_exists(res, name)
            if existing["metadata"].get("deletionTimestamp"):
                error.message = f"object is being deleted: {error.message}"
            raise error
        obj = self._store_new(res, ns, body)
        if res is _DEPLOYMENTS:
            self._observe(ns, name)
            obj = self.objects._get(res, ns, name) or obj
        return copy.deepcopy(obj)

    def _replace(self, res: Resource, ns: str, name: str, body: Obj) -> Obj:
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.get("name") != name:
            raise bad_request("the name of the object does not match the name on the URL")
        self._check_namespace_matches(res, ns, meta)
        current = self.objects._get(res, ns, name)
        if current is None:
            raise not_found(res, name)
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        return self._update(res, ns, current, body)

    async def _patch(self, res: Resource, ns: str, name: str, request: web.Request) -> Obj:
        current = self.objects._get(res, ns, name)
        if current is None:
            raise not_found(res, name)
        patch = await _json_body(request, object_only=False)
        content_type = request.content_type
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise bad_request("json patch: the body must be a list of operations")
            patched = json_patch(current, patch)
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            if not isinstance(patch, dict):
                raise bad_request("the patch must be a JSON object")
            by_name = content_type == "application/strategic-merge-patch+json"
            patched = merge_patch(current, patch, by_name=by_name)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - "
                f"accepted media types include: application/json-patch+json, "
                f"application/merge-patch+json, application/strategic-merge-patch+json; "
                f"got {content_type}",
            )
        meta = patched.get("metadata") or {}
        if meta.get("name") != name:
            raise bad_request("the name of the object does not match the name on the URL")
        wanted = meta.get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        return self._update(res, ns, current, patched)

    def _remove(self, res: Resource, ns: str, name: str) -> Obj:
        held = self._held_by_finalizers(res, ns, name)
        if held is not None:
            return held
        obj = self.objects._delete(res, ns, name)
        if obj is None:
            raise not_found(res, name)
        obj["metadata"]["resourceVersion"] = self._bump()
        if res is _DEPLOYMENTS:
            for tasks in (self._rollouts, self._observing):
                task = tasks.pop((ns, name), None)
                if task is not None:
                    task.cancel()
            uid = obj["metadata"]["uid"]
            for rs in self.objects._all(_REPLICASETS, ns):
                if _owner_uid(rs) == uid:
                    self.objects._delete(_REPLICASETS, ns, rs["metadata"]["name"])
        details = {**_details(res, name), "uid": obj["metadata"]["uid"]}
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    # storage helpers

    def _bump(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _check_namespace_matches(self, res: Resource, ns: str, meta: Obj) -> None:
        if not res.namespaced:
            meta.pop("namespace", None)
            return
        given = meta.get("namespace")
        if given and given != ns:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )

    # the namespace lifecycle: admission, finalizers and the namespace controller

    def _admit_namespace(self, res: Resource, ns: str, name: str) -> None:
        """NamespaceLifecycle admission: no creating in a missing or terminating namespace."""
        if not res.namespaced:
            return
        namespace = self.objects._get(_NAMESPACES, "", ns)
        if namespace is None:
            raise not_found(_NAMESPACES, ns)
        if (namespace.get("status") or {}).get("phase") == "Terminating":
            reason = (
                f"unable to create new content in namespace {ns} because it is being terminated"
            )
            details = _details(res, name)
            details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {ns} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            message = f'{res.qualified} "{name}" is forbidden: {reason}'
            raise ApiError(403, "Forbidden", message, details)

    def _held_by_finalizers(self, res: Resource, ns: str, name: str) -> Obj | None:
        """A DELETE of a namespace, or of an object with finalizers, only marks it: the
        object (with ``deletionTimestamp``) is the answer, and it stays. None otherwise."""
        obj = self.objects._get(res, ns, name)
        if obj is None or (res is not _NAMESPACES and not obj["metadata"].get("finalizers")):
            return None
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = _now()
            if res is _NAMESPACES:
                obj["status"] = {**(obj.get("status") or {}), "phase": "Terminating"}
                self._terminations[name] = asyncio.get_running_loop().create_task(
                    self._terminate(name)
                )
            self._save(res, ns, obj)
        return copy.deepcopy(obj)

    def _finally_gone(self, res: Resource, ns: str, obj: Obj) -> Obj:
        """The update that took the last finalizer away deletes the object."""
        self.objects._delete(res, ns, obj["metadata"]["name"])
        if res is _NAMESPACES:
            self.objects._drop_namespace(obj["metadata"]["name"])
        return copy.deepcopy(obj)

    def _finalize(self, name: str, body: Obj) -> Obj:
        """``PUT /api/v1/namespaces/<name>/finalize``: only ``spec.finalizers`` changes."""
        current = self.objects._get(_NAMESPACES, "", name)
        if current is None:
            raise not_found(_NAMESPACES, name)
        obj = copy.deepcopy(current)
        obj["spec"] = {**(obj.get("spec") or {}), **_finalizers_of(body)}
        if obj == current:
            return copy.deepcopy(current)
        self._save(_NAMESPACES, "", obj)
        if obj["metadata"].get("deletionTimestamp") and not _holding(_NAMESPACES, obj):
            return self._finally_gone(_NAMESPACES, "", obj)
        return copy.deepcopy(obj)

    async def _terminate(self, name: str) -> None:
        """The namespace controller: delete everything in the namespace, say what remains
        in its conditions, and take the ``kubernetes`` finalizer away once nothing does."""
        try:
            await asyncio.sleep(self.namespace_deletion_seconds)
            while True:
                namespace = self.objects._get(_NAMESPACES, "", name)
                if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
                    return
                remaining, finalizers = self._delete_content(name)
                self._namespace_conditions(namespace, remaining, finalizers)
                if not remaining:
                    left = [f for f in _finalizers_of(namespace)["finalizers"] if f != "kubernetes"]
                    self._finalize(name, {"spec": {"finalizers": left}})
                    return
                await asyncio.sleep(max(self.namespace_deletion_seconds, 0.05))
        finally:
            self._terminations.pop(name, None)

    def _delete_content(self, ns: str) -> tuple[dict[str, int], dict[str, int]]:
        """Delete every object in ``ns``; what remains (by ``<plural>.<group>``) and the
        finalizers holding it (by finalizer), with their counts."""
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        for res in RESOURCES:
            if not res.namespaced:
                continue
            for obj in list(self.objects._all(res, ns)):
                name = obj["metadata"]["name"]
                if self.objects._get(res, ns, name) is None:
                    continue  # went with its owner
                with contextlib.suppress(ApiError):
                    self._remove(res, ns, name)
                if self.objects._get(res, ns, name) is not None:
                    key = f"{res.plural}.{res.group}"
                    remaining[key] = remaining.get(key, 0) + 1
                    for finalizer in obj["metadata"].get("finalizers") or []:
                        finalizers[finalizer] = finalizers.get(finalizer, 0) + 1
        return remaining, finalizers

    def _namespace_conditions(
        self, namespace: Obj, remaining: dict[str, int], finalizers: dict[str, int]
    ) -> None:
        def listed(counts: dict[str, int], form: str) -> str:
            return ", ".join(sorted(form.format(k, n) for k, n in counts.items()))

        wanted = {
            "NamespaceDeletionDiscoveryFailure": (
                "ResourcesDiscovered",
                "All resources successfully discovered",
            ),
            "NamespaceDeletionGroupVersionParsingFailure": (
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed",
            ),
            "NamespaceDeletionContentFailure": (
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization",
            ),
            "NamespaceContentRemaining": (
                (
                    "SomeResourcesRemain",
                    "Some resources are remaining: "
                    + listed(remaining, "{} has {} resource instances"),
                )
                if remaining
                else ("ContentRemoved", "All content successfully removed")
            ),
            "NamespaceFinalizersRemaining": (
                (
                    "SomeFinalizersRemain",
                    "Some content in the namespace has finalizers remaining: "
                    + listed(finalizers, "{} in {} resource instances"),
                )
                if finalizers
                else ("ContentHasNoFinalizers", "All content-preserving finalizers finished")
            ),
        }
        status = namespace.setdefault("status", {})
        old = {c["type"]: c for c in status.get("conditions") or []}
        conditions = []
        for kind, (reason, message) in wanted.items():
            truth = "True" if reason.startswith("Some") else "False"
            before = old.get(kind)
            since = before["lastTransitionTime"] if before and before["status"] == truth else _now()
            conditions.append(
                {
                    "type": kind,
                    "status": truth,
                    "lastTransitionTime": since,
                    "reason": reason,
                    "message": message,
                }
            )
        if conditions != status.get("conditions"):
            status["conditions"] = conditions
            self._save(_NAMESPACES, "", namespace)

    def _validate(self, res: Resource, name: str, body: Obj) -> None:
        causes: list[tuple[str, str]] = []
        if not name:
            causes.append(("metadata.name", "Required value: name or generateName is required"))
        elif res is _NAMESPACES:
            if len(name) > 63:
                causes.append(
                    (
                        "metadata.name",
                        f'Invalid value: "{name}": must be no more than 63 characters',
                    )
                )
            elif not _LABEL_RE.fullmatch(name):
                causes.append(("metadata.name", f'Invalid value: "{name}": {_LABEL_MSG}'))
        elif len(name) > 253:
            causes.append(
                ("metadata.name", f'Invalid value: "{name}": must be no more than 253 characters')
            )
        elif not _SUBDOMAIN_RE.fullmatch(name):
            causes.append(("metadata.name", f'Invalid value: "{name}": {_SUBDOMAIN_MSG}'))
        if res in (_DEPLOYMENTS, _REPLICASETS):
            spec = body.get("spec") or {}
            if not (spec.get("selector") or {}).get("matchLabels") and not (
                spec.get("selector") or {}
            ).get("matchExpressions"):
                causes.append(("spec.selector", "Required value"))
            else:
                template_labels = ((spec.get("template") or {}).get("metadata") or {}).get(
                    "labels"
                ) or {}
                selector = spec["selector"].get("matchLabels") or {}
                if any(template_labels.get(k) != v for k, v in selector.items()):
                    causes.append(
                        (
                            "spec.template.metadata.labels",
                            f"Invalid value: {json.dumps(template_labels)}: `selector` does "
                            "not match template `labels`",
                        )
                    )
        if causes:
            raise invalid(res, name or "", causes)

    def _store_new(self, res: Resource, ns: str, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        meta = obj["metadata"]
        for key in ("deletionTimestamp", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = self._bump()
        meta["creationTimestamp"] = _now()
        if res.namespaced:
            meta["namespace"] = ns
        if res.tracks_generation:
            meta["generation"] = 1
        _defaults(res, obj)
        if res is _DEPLOYMENTS:
            obj["status"] = {}
        self.objects._put(res, ns, obj)
        return obj

    def _update(self, res: Resource, ns: str, current: Obj, body: Obj) -> Obj:
        obj = copy.deepcopy(body)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        meta = obj.setdefault("metadata", {})
        old_meta = current["metadata"]
        for key in ("uid", "creationTimestamp", "generation", "namespace", "deletionTimestamp"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        self._validate(res, meta["name"], obj)
        if res is _ROLEBINDINGS and obj.get("roleRef") != current.get("roleRef"):
            # kubernetes pkg/apis/rbac/validation/validation.go, ValidateRoleBindingUpdate
            ref = obj.get("roleRef") or {}
            shown = (
                f'rbac.RoleRef{{APIGroup:"{ref.get("apiGroup", "")}", '
                f'Kind:"{ref.get("kind", "")}", Name:"{ref.get("name", "")}"}}'
            )
            raise invalid(
                res, meta["name"], [("roleRef", f"Invalid value: {shown}: cannot change roleRef")]
            )
        _defaults(res, obj)
        if res is _NAMESPACES:  # the strategy's PrepareForUpdate
            obj["status"] = copy.deepcopy(current.get("status", {}))
            obj["spec"] = {**(obj.get("spec") or {}), **_finalizers_of(current)}
        if res in (_DEPLOYMENTS, _REPLICASETS):
            obj["status"] = copy.deepcopy(current.get("status", {}))
        spec_changed = obj.get("spec") != current.get("spec")
        if res.tracks_generation and spec_changed:
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if res is _DEPLOYMENTS:
            # the revision annotation belongs to the controller
            annotations = meta.get("annotations") or {}
            old_revision = (old_meta.get("annotations") or {}).get(REVISION)
            if old_revision is not None:
                annotations[REVISION] = old_revision
                meta["annotations"] = annotations
        if obj == current:
            return copy.deepcopy(current)
        meta["resourceVersion"] = self._bump()
        self.objects._put(res, ns, obj)
        if meta.get("deletionTimestamp") and not _holding(res, obj):
            return self._finally_gone(res, ns, obj)
        if res is _DEPLOYMENTS and spec_changed:
            self._observe(ns, meta["name"])
            obj = self.objects._get(res, ns, meta["name"]) or obj
        return copy.deepcopy(obj)

    def _save(self, res: Resource, ns: str, obj: Obj) -> None:
        """A controller's write: bumps resourceVersion, keeps generation."""
        obj["metadata"]["resourceVersion"] = self._bump()
        self.objects._put(res, ns, obj)

    # the deployment controller

    def _observe(self, ns: str, name: str) -> None:
        """The controller sees a new generation ``observe_seconds`` later (at once with 0).

        Like the real one (a watch event, a work queue, then ``syncDeployment``), it lags
        behind the write: until then ``status`` is the previous generation's, a stale
        ``Progressing=False/ProgressDeadlineExceeded`` among it, and
        ``status.observedGeneration`` stays below ``metadata.generation``. This is what
        kubectl rollout_status.go guards against by reading nothing before
        ``generation <= observedGeneration``. Writes during the lag are seen together.
        """
        if self.observe_seconds <= 0:
            self._reconcile(ns, name)
            return
        if (ns, name) in self._observing:
            return

        async def later() -> None:
            try:
                await asyncio.sleep(self.observe_seconds)
                self._reconcile(ns, name)
            finally:
                self._observing.pop((ns, name), None)

        self._observing[(ns, name)] = asyncio.get_running_loop().create_task(later())

    def _reconcile(self, ns: str, name: str) -> None:
        """Find or make the ReplicaSet for the Deployment's template, then roll it out."""
        deployment = self.objects._get(_DEPLOYMENTS, ns, name)
        if deployment is None:
            return
        spec = deployment["spec"]
        template = spec["template"]
        owned = [
            rs
            for rs in self.objects._all(_REPLICASETS, ns)
            if _owner_uid(rs) == deployment["metadata"]["uid"]
        ]
        newest = max((_revision(rs) for rs in owned), default=0)
        # util/deployment_util.go EqualIgnoreHash: templates compared as decoded objects,
        # where an absent field and its zero value (`resources: {}`, `creationTimestamp:
        # null`, as kubectl's Go structs send them) are the same
        matching = next(
            (rs for rs in owned if _decoded(_without_hash(rs)) == _decoded(template)), None
        )
        annotations = {
            k: v
            for k, v in (deployment["metadata"].get("annotations") or {}).items()
            if k not in _NOT_COPIED
        }
        desired = int(spec.get("replicas", 1))
        if matching is None:
            template_hash = _pod_template_hash(template)
            new_rs = self._new_replicaset(deployment, template_hash)
            revision = newest + 1
        else:
            new_rs = matching
            revision = _revision(matching)
            if revision != newest:  # an old template again: it becomes the newest revision
                history = [
                    h
                    for h in new_rs["metadata"]["annotations"].get(REVISION_HISTORY, "").split(",")
                    if h
                ]
                new_rs["metadata"]["annotations"][REVISION_HISTORY] = ",".join(
                    [*history, str(revision)]
                )
                revision = newest + 1
        rs_annotations = new_rs["metadata"].setdefault("annotations", {})
        rs_annotations.update(annotations)
        rs_annotations[REVISION] = str(revision)
        rs_annotations[DESIRED_REPLICAS] = str(desired)
        rs_annotations[MAX_REPLICAS] = str(desired + _max_surge(spec, desired))
        if new_rs["spec"].get("replicas") != desired:
            new_rs["spec"]["replicas"] = desired
            new_rs["metadata"]["generation"] = int(new_rs["metadata"].get("generation", 0)) + 1
        self._save(_REPLICASETS, ns, new_rs)
        deployment["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        self._save(_DEPLOYMENTS, ns, deployment)
        created = matching is None
        old = self._rollouts.pop((ns, name), None)
        if old is not None:
            old.cancel()
        generation = int(deployment["metadata"].get("generation", 1))
        self._rollouts[(ns, name)] = asyncio.get_running_loop().create_task(
            self._roll_out(
                ns, name, new_rs["metadata"]["name"], created=created, generation=generation
            )
        )

    def _new_replicaset(self, deployment: Obj, template_hash: str) -> Obj:
        meta = deployment["metadata"]
        spec = deployment["spec"]
        template = copy.deepcopy(spec["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = (
            template_hash
        )
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
        labels = dict(template["metadata"]["labels"])
        body: Obj = {
            "metadata": {
                "name": f"{meta['name']}-{template_hash}",
                "labels": labels,
                "annotations": {},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        return self._store_new(_REPLICASETS, meta["namespace"], body)

    def _image_fails(self, template: Obj) -> bool:
        for container in (template.get("spec") or {}).get("containers") or []:
            image = str(container.get("image", ""))
            tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
            if image in self.failing_images or tag in self.failing_images:
                return True
        return False

    def _deadline(self, spec: Obj) -> float:
        if self.progress_deadline_seconds is not None:
            return self.progress_deadline_seconds
        return float(spec.get("progressDeadlineSeconds", 600)) * self.time_scale

    async def _roll_out(
        self, ns: str, name: str, rs_name: str, *, created: bool, generation: int
    ) -> None:
        """Move the Deployment's status along, as the controller would see its pods do.

        ``status.observedGeneration`` is the ``generation`` this rollout was started for,
        never a newer one written meanwhile (the controller has not seen that yet)."""
        progress = partial(self._set_progress, generation=generation)
        deployment = self.objects._get(_DEPLOYMENTS, ns, name)
        new_rs = self.objects._get(_REPLICASETS, ns, rs_name)
        if deployment is None or new_rs is None:
            return
        spec = deployment["spec"]
        desired = int(spec.get("replicas", 1))
        old_sets = [
            rs
            for rs in self.objects._all(_REPLICASETS, ns)
            if _owner_uid(rs) == deployment["metadata"]["uid"] and rs is not new_rs
        ]
        new_ready = int(new_rs.get("status", {}).get("readyReplicas", 0))
        reason = "NewReplicaSetCreated" if created else "FoundNewReplicaSet"
        verb = "Created new" if created else "Found new"
        progress(ns, name, new_rs, old_sets, new_ready, reason, f'{verb} replica set "{rs_name}"')
        if self._image_fails(new_rs["spec"]["template"]):
            await asyncio.sleep(self._deadline(spec))
            progress(
                ns,
                name,
                new_rs,
                old_sets,
                0,
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
                progressing="False",
            )
            return
        if desired > 1 and new_ready < desired // 2:
            await asyncio.sleep(self.rollout_seconds / 2)
            progress(
                ns,
                name,
                new_rs,
                old_sets,
                desired // 2,
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
            )
            await asyncio.sleep(self.rollout_seconds / 2)
        else:
            await asyncio.sleep(self.rollout_seconds)
        for rs in old_sets:
            rs["spec"]["replicas"] = 0
            rs["status"] = {
                "replicas": 0,
                "observedGeneration": rs["metadata"].get("generation", 1),
            }
        progress(
            ns,
            name,
            new_rs,
            old_sets,
            desired,
            "NewReplicaSetAvailable",
            f'ReplicaSet "{rs_name}" has successfully progressed.',
        )

    def _set_progress(
        self,
        ns: str,
        name: str,
        new_rs: Obj,
        old_sets: list[Obj],
        new_ready: int,
        reason: str,
        message: str,
        *,
        progressing: str = "True",
        generation: int,
    ) -> None:
        deployment = self.objects._get(_DEPLOYMENTS, ns, name)
        if deployment is None:
            return
        spec = deployment["spec"]
        desired = int(spec.get("replicas", 1))
        new_rs["status"] = {
            "replicas": desired,
            "fullyLabeledReplicas": desired,
            "readyReplicas": new_ready,
            "availableReplicas": new_ready,
            "observedGeneration": new_rs["metadata"].get("generation", 1),
        }
        if not new_ready:
            del new_rs["status"]["readyReplicas"], new_rs["status"]["availableReplicas"]
        self._save(_REPLICASETS, ns, new_rs)
        for rs in old_sets:
            if self.objects._get(_REPLICASETS, ns, rs["metadata"]["name"]) is not None:
                self._save(_REPLICASETS, ns, rs)
        old_replicas = sum(int(rs["spec"].get("replicas", 0)) for rs in old_sets)
        old_ready = sum(int(rs.get("status", {}).get("readyReplicas", 0)) for rs in old_sets)
        ready = new_ready + old_ready
        minimum = desired - _max_unavailable(spec, desired)
        now = _now()
        previous = {c["type"]: c for c in deployment.get("status", {}).get("conditions", [])}

        def condition(kind: str, status: str, why: str, text: str) -> Obj:
            before = previous.get(kind)
            since = before["lastTransitionTime"] if before and before["status"] == status else now
            return {
                "type": kind,
                "status": status,
                "lastUpdateTime": now,
                "lastTransitionTime": since,
                "reason": why,
                "message": text,
            }

        available = (
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
            if ready >= minimum
            else condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        )
        status: Obj = {
            "observedGeneration": generation,
            "replicas": desired + old_replicas,
            "updatedReplicas": desired,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, desired + old_replicas - ready),
            "conditions": [available, condition("Progressing", progressing, reason, message)],
        }
        for key in ("readyReplicas", "availableReplicas", "unavailableReplicas"):
            if not status[key]:
                del status[key]
        deployment["status"] = status
        self._save(_DEPLOYMENTS, ns, deployment)


# --- helpers --------------------------------------------------------------------------


async def _json_body(request: web.Request, *, object_only: bool = True) -> Any:
    if request.content_type in ("application/vnd.kubernetes.protobuf", "application/cbor"):
        # the stand-in speaks JSON only (recent kubectl releases send protobuf for typed
        # creates: use one that sends JSON, such as Debian's, or the Python client)
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: application/json, application/yaml; got {request.content_type}",
        )
    try:
        body = json.loads(await request.text())
    except ValueError:
        raise bad_request("the request body is not valid JSON") from None
    if object_only and not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _defaults(res: Resource, obj: Obj) -> None:
    """The defaults the API server fills in, for the fields the bot reads."""
    if res is _NAMESPACES:  # PrepareForCreate (an update keeps the stored ones)
        finalizers = obj.setdefault("spec", {}).setdefault("finalizers", [])
        if "kubernetes" not in finalizers:
            finalizers.append("kubernetes")
        obj["status"] = {"phase": "Active"}
    elif res.kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        data: Obj = obj.setdefault("data", {}) if string_data else {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    elif res is _DEPLOYMENTS:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "strategy",
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        )


def _selected(obj: Obj, labels: str, fields: str) -> bool:
    """Whether ``obj`` matches a list's or watch's label and field selectors."""
    if labels and not match_labels(labels, obj["metadata"].get("labels") or {}):
        return False
    return not fields or _match_fields(fields, obj)


def _finalizers_of(namespace: Obj) -> Obj:
    return {"finalizers": list((namespace.get("spec") or {}).get("finalizers") or [])}


def _holding(res: Resource, obj: Obj) -> list[str]:
    """The finalizers that keep a deleted object: a namespace's ``spec.finalizers`` too."""
    held = list(obj["metadata"].get("finalizers") or [])
    return held + _finalizers_of(obj)["finalizers"] if res is _NAMESPACES else held


def _owner_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _without_hash(rs: Obj) -> Obj:
    template = copy.deepcopy(rs["spec"]["template"])
    labels = template.get("metadata", {}).get("labels", {})
    labels.pop("pod-template-hash", None)
    return template  # type: ignore[no-any-return]


def _decoded(value: Any) -> Any:
    """``value`` as Go would see it decoded: without nulls and empty objects."""
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items() if v is not None and v != {}}
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    return value


def _pod_template_hash(template: Obj) -> str:
    """A short, stable, DNS-safe hash of the template (the real one is FNV-32a based)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"  # the controller's "safe" alphabet
    number = int.from_bytes(digest[:8])
    chars = []
    for _ in range(10):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


def _scaled(value: Any, desired: int, *, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = desired * int(value[:-1]) / 100
        return int(-(-exact // 1)) if round_up else int(exact)
    return int(value)


def _max_surge(spec: Obj, desired: int) -> int:
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    return _scaled(rolling.get("maxSurge", "25%"), desired, round_up=True)


def _max_unavailable(spec: Obj, desired: int) -> int:
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    return _scaled(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
