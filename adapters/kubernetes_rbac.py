"""Kubernetes RoleBindings for temporary access: a mixin of `KubernetesCluster`
(adapters.kubernetes), kept apart so each module stays readable.

A RoleBinding's `roleRef` cannot change once created (the API server answers 422
Invalid, "cannot change roleRef": kubernetes pkg/apis/rbac/validation/validation.go,
ValidateRoleBindingUpdate), so making one match a spec with another role deletes and
creates it; subjects, labels and annotations are replaced in place, guarded by the
resourceVersion read. Reference:
https://kubernetes.io/docs/reference/access-authn-authz/rbac/#rolebinding-and-clusterrolebinding
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kernel.ports.systems import RoleBindingSpec

T = TypeVar("T")

RBAC_GROUP = "rbac.authorization.k8s.io"


def role_binding_body(spec: RoleBindingSpec, *, resource_version: str | None = None) -> Any:
    """The RoleBinding the API server is sent for `spec`."""
    return client.V1RoleBinding(
        metadata=client.V1ObjectMeta(
            name=spec.name,
            namespace=spec.namespace,
            labels=dict(spec.labels),
            annotations=dict(spec.annotations),
            resource_version=resource_version,
        ),
        role_ref=client.V1RoleRef(api_group=RBAC_GROUP, kind="ClusterRole", name=spec.cluster_role),
        subjects=[
            client.RbacV1Subject(
                kind=spec.subject_kind, name=spec.subject_name, api_group=RBAC_GROUP
            )
        ],
    )


class RoleBindings:
    """`ensure_role_binding` and `delete_role_binding` on the cluster's RBAC API."""

    _rbac: Any
    _timeout: float

    def _call(self, what: str, fn: Callable[[], T]) -> Awaitable[T]:
        raise NotImplementedError

    def _ensure_role_binding_sync(self, spec: RoleBindingSpec) -> bool:
        # each call spelled out on self._rbac: tests/unit/test_deploy.py reads them from this
        # source to check the shipped ClusterRole grants every one
        ns, timeout = spec.namespace, self._timeout
        try:
            current = self._rbac.read_namespaced_role_binding(
                spec.name, ns, _request_timeout=timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._rbac.create_namespaced_role_binding(
                ns, role_binding_body(spec), _request_timeout=timeout
            )
            return True
        ref = current.role_ref
        if (ref.kind, ref.name) != ("ClusterRole", spec.cluster_role):
            self._rbac.delete_namespaced_role_binding(spec.name, ns, _request_timeout=timeout)
            self._rbac.create_namespaced_role_binding(
                ns, role_binding_body(spec), _request_timeout=timeout
            )
            return True
        subjects = [(s.kind, s.name) for s in current.subjects or []]
        meta = current.metadata
        if (
            subjects == [(spec.subject_kind, spec.subject_name)]
            and (meta.labels or {}) == spec.labels
            and (meta.annotations or {}) == spec.annotations
        ):
            return False
        body = role_binding_body(spec, resource_version=meta.resource_version)
        self._rbac.replace_namespaced_role_binding(spec.name, ns, body, _request_timeout=timeout)
        return True

    async def ensure_role_binding(self, spec: RoleBindingSpec) -> bool:
        return await self._call(
            f"binding {spec.subject_name} to {spec.cluster_role} in {spec.namespace}",
            lambda: self._ensure_role_binding_sync(spec),
        )

    def _delete_role_binding_sync(self, namespace: str, name: str) -> bool:
        try:
            self._rbac.delete_namespaced_role_binding(
                name, namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def delete_role_binding(self, namespace: str, name: str) -> bool:
        return await self._call(
            f"deleting RoleBinding {name} in {namespace}",
            lambda: self._delete_role_binding_sync(namespace, name),
        )
