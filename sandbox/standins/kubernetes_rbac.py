"""RBAC for the Kubernetes stand-in: who a bearer token is, and what that identity may do.

Authentication: a static token file (``--token-auth-file``, https://kubernetes.io/docs/
reference/access-authn-authz/authentication/#static-token-file): each token is a user
name and groups; a ServiceAccount's token is the user
``system:serviceaccount:<namespace>:<name>`` in the groups ``system:serviceaccounts``,
``system:serviceaccounts:<namespace>`` and ``system:authenticated``
(k8s.io/apiserver ``pkg/authentication/serviceaccount/util.go``).

Authorization follows the RBAC authorizer (kubernetes ``plugin/pkg/auth/authorizer/rbac/
rbac.go`` and ``pkg/registry/rbac/validation/rule.go``, ``VisitRulesFor`` and
``appliesToUser``): a request is allowed when a rule of a ClusterRole bound by a
ClusterRoleBinding, or of a Role/ClusterRole bound by a RoleBinding in the request's
namespace, matches it; rules match as ``pkg/apis/rbac/v1/evaluation_helpers.go`` says
(``VerbMatches``, ``APIGroupMatches``, ``ResourceMatches`` with ``*`` and
``<resource>/<subresource>``, ``ResourceNameMatches``: an empty list is every name; a
rule with ``resourceNames`` never matches ``list``, ``watch`` or ``create``, which carry
no name). Subjects: ``User`` by name, ``Group`` by any of the identity's groups,
``ServiceAccount`` by the ServiceAccount user name (namespace defaulting to the
RoleBinding's).

The request's attributes come from its path and method as k8s.io/apiserver
``pkg/endpoints/request/requestinfo.go`` makes them: GET is ``get`` (a name) or ``list``
(none), ``watch`` with ``?watch=true``; POST ``create``; PUT ``update``; PATCH ``patch``;
DELETE ``delete`` (``deletecollection`` without a name). Discovery (``/api``, ``/apis``,
``/version``, ``/openapi``) and creating a SelfSubjectAccessReview are allowed to every
authenticated identity, as the default ``system:discovery``, ``system:public-info-viewer``
and ``system:basic-user`` ClusterRoles grant (``plugin/pkg/auth/authorizer/rbac/
bootstrappolicy/policy.go``).

A refusal is the API server's 403 (k8s.io/apiserver ``pkg/endpoints/handlers/
responsewriters/errors.go``, ``forbiddenMessage``, through apimachinery
``errors.NewForbidden``): ``deployments.apps "web" is forbidden: User
"system:serviceaccount:platform-bot:platform-bot" cannot patch resource "deployments" in
API group "apps" in the namespace "shop"`` (``at the cluster scope`` without a
namespace; ``<resource>/<subresource>`` for a subresource; without a name the message
starts ``deployments.apps is forbidden:``), reason Forbidden, ``details`` with ``name``,
``group`` and ``kind`` (the resource).

Simplified: the policy is the objects given at start (the shipped YAML), not the
RBAC objects stored through the API; no aggregation rules, no escalation check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
_NAMELESS_VERBS = frozenset({"list", "watch", "create", "deletecollection"})


@dataclass(frozen=True)
class Identity:
    """Who a token is."""

    user: str
    groups: tuple[str, ...] = ("system:authenticated",)

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Identity:
        return cls(
            f"system:serviceaccount:{namespace}:{name}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )


ADMIN = Identity("kubernetes-admin", ("system:masters", "system:authenticated"))
"""What a stand-in token is when no users are given: an admin (``system:masters``)."""


@dataclass(frozen=True)
class Attributes:
    """What a request does, as the authorizer sees it."""

    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def verb_of(method: str, *, named: bool, watch: bool) -> str:
    """The authorizer's verb for an HTTP method (requestinfo.go)."""
    if method == "GET":
        return "watch" if watch else ("get" if named else "list")
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }.get(method, method.lower())


def _matches(values: list[str], wanted: str) -> bool:
    return "*" in values or wanted in values


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    """evaluation_helpers.go RuleAllows for a resource request."""
    if not _matches(list(rule.get("verbs") or []), attrs.verb):
        return False
    if not _matches(list(rule.get("apiGroups") or []), attrs.group):
        return False
    resources = list(rule.get("resources") or [])
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if not (
        "*" in resources
        or combined in resources
        or (attrs.subresource and f"*/{attrs.subresource}" in resources)
    ):
        return False
    names = list(rule.get("resourceNames") or [])
    if not names:
        return True
    return attrs.verb not in _NAMELESS_VERBS and attrs.name in names


@dataclass
class Policy:
    """Roles, ClusterRoles and their bindings; ``allows`` is the RBAC authorizer."""

    objects: list[Obj] = field(default_factory=list)

    @classmethod
    def from_yaml(
        cls, *paths: Path, namespace: str | None = None, objects_namespace: str | None = None
    ) -> Policy:
        """The RBAC objects in these YAML files (multi-document). ``namespace`` fills in the
        namespace of ServiceAccount subjects that have none, as Kustomize's ``namespace:``
        does for the shipped bindings; ``objects_namespace`` is the namespace of Roles and
        RoleBindings that name none (a kustomization's ``namespace:`` sets it)."""
        found: list[Obj] = []
        for path in paths:
            for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
                if isinstance(doc, dict) and doc.get("kind") in (
                    "ClusterRole",
                    "Role",
                    "ClusterRoleBinding",
                    "RoleBinding",
                ):
                    if objects_namespace is not None and doc["kind"] in ("Role", "RoleBinding"):
                        doc.setdefault("metadata", {}).setdefault("namespace", objects_namespace)
                    if namespace is not None:
                        for subject in doc.get("subjects") or []:
                            if subject.get("kind") == "ServiceAccount":
                                subject.setdefault("namespace", namespace)
                    found.append(doc)
        return cls(found)

    def _of_kind(self, kind: str) -> Iterable[Obj]:
        return (o for o in self.objects if o.get("kind") == kind)

    def role(self, kind: str, name: str, namespace: str = "") -> Obj | None:
        for obj in self._of_kind(kind):
            meta = obj.get("metadata") or {}
            if meta.get("name") == name and (
                kind == "ClusterRole" or meta.get("namespace") == namespace
            ):
                return obj
        return None

    def without_rule(self, role: str, index: int) -> Policy:
        """A copy with rule ``index`` of ClusterRole ``role`` taken away (for tests)."""
        copied = yaml.safe_load(yaml.safe_dump(self.objects))
        for obj in copied:
            if obj.get("kind") == "ClusterRole" and obj["metadata"]["name"] == role:
                del obj["rules"][index]
                return Policy(copied)
        raise KeyError(f"no ClusterRole {role}")

    def allows(self, who: Identity, attrs: Attributes) -> bool:
        if "system:masters" in who.groups:
            return True
        for binding in self._of_kind("ClusterRoleBinding"):
            if _applies(binding, who, "") and self._grants(binding, "", attrs):
                return True
        if attrs.namespace:
            for binding in self._of_kind("RoleBinding"):
                ns = (binding.get("metadata") or {}).get("namespace", "")
                if (
                    ns == attrs.namespace
                    and _applies(binding, who, ns)
                    and self._grants(binding, ns, attrs)
                ):
                    return True
        return False

    def _grants(self, binding: Obj, namespace: str, attrs: Attributes) -> bool:
        ref = binding.get("roleRef") or {}
        role = self.role(str(ref.get("kind")), str(ref.get("name")), namespace)
        return role is not None and any(rule_allows(r, attrs) for r in role.get("rules") or [])


def _applies(binding: Obj, who: Identity, namespace: str) -> bool:
    """rule.go appliesToUser, for each subject of the binding."""
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == who.user:
            return True
        if kind == "Group" and name in who.groups:
            return True
        if kind == "ServiceAccount":
            ns = subject.get("namespace") or namespace
            if who.user == f"system:serviceaccount:{ns}:{name}":
                return True
    return False


def forbidden(who: Identity, attrs: Attributes) -> tuple[str, Obj]:
    """The 403's message and details, as the API server words them."""
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    why = (
        f'User "{who.user}" cannot {attrs.verb} resource "{resource}" in API group '
        f'"{attrs.group}" {where}'
    )
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    message = (
        f'{qualified} "{attrs.name}" is forbidden: {why}'
        if attrs.name
        else f"{qualified} is forbidden: {why}"
    )
    details: Obj = {"kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.group:
        details["group"] = attrs.group
    return message, details


def review(who: Identity, policy: Policy | None, body: Obj) -> Obj:
    """A SelfSubjectAccessReview answered (authorization.k8s.io/v1; kubernetes
    ``pkg/registry/authorization/selfsubjectaccessreview/rest.go``): the body with
    ``status.allowed``, for the identity that sent it."""
    spec = body.get("spec") or {}
    wanted = spec.get("resourceAttributes")
    answer: Obj = {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
    }
    if not isinstance(wanted, dict):
        answer["status"] = {"allowed": False, "reason": "only resourceAttributes are served"}
        return answer
    attrs = Attributes(
        verb=str(wanted.get("verb", "")),
        group=str(wanted.get("group", "")),
        resource=str(wanted.get("resource", "")),
        subresource=str(wanted.get("subresource", "")),
        namespace=str(wanted.get("namespace", "")),
        name=str(wanted.get("name", "")),
    )
    allowed = policy is None or policy.allows(who, attrs)
    answer["status"] = {"allowed": allowed}
    return answer


SHIPPED_RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac"
"""The ClusterRoles and bindings shipped with the bot (deploy/rbac, in deploy/base)."""
BOT_NAMESPACE = "platform-bot"
"""deploy/base/kustomization.yaml's `namespace:`, given to the bindings' subjects."""
BOT = Identity.service_account(BOT_NAMESPACE, "platform-bot")
"""The bot's identity in the cluster: its ServiceAccount (deploy/base/serviceaccount.yaml)."""


SHIPPED_VELERO_RBAC = Path(__file__).resolve().parents[2] / "deploy" / "velero-rbac"
"""The Role and RoleBinding in Velero's namespace (`kubectl apply -k deploy/velero-rbac`)."""
VELERO_NAMESPACE = "velero"
"""deploy/velero-rbac/kustomization.yaml's `namespace:`."""


def shipped_policy() -> Policy:
    """The RBAC objects the bot ships, as `kubectl apply -k deploy/base` and `kubectl apply
    -k deploy/velero-rbac` create them."""
    base = Policy.from_yaml(
        SHIPPED_RBAC / "clusterroles.yaml",
        SHIPPED_RBAC / "bindings.yaml",
        namespace=BOT_NAMESPACE,
    )
    velero = Policy.from_yaml(
        SHIPPED_VELERO_RBAC / "role.yaml",
        namespace=BOT_NAMESPACE,
        objects_namespace=VELERO_NAMESPACE,
    )
    return Policy([*base.objects, *velero.objects])
