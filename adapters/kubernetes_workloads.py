"""Kubernetes workloads for environments on demand: one Deployment of the service in its
own namespace, and an Ingress for its URL; the workload half of `KubernetesCluster`.

Created with the typed client models; when the Deployment exists already (a re-run) only
its image is set, as `kubectl set image` does (a strategic merge patch of the container).
A refusal (a ResourceQuota exceeded, an admission webhook) is the API server's Status
message, which `KubernetesCluster._call` puts in the AdapterError the person sees.

References: https://kubernetes.io/docs/concepts/workloads/controllers/deployment/,
https://kubernetes.io/docs/concepts/services-networking/ingress/ (networking.k8s.io/v1
Ingress: rules[].host, http.paths[].backend.service).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from adapters.kubernetes_namespaces import MANAGED_BY, is_status
from kernel.ports.clusters import WorkloadSpec

T = TypeVar("T")

CHANGE_CAUSE = "kubernetes.io/change-cause"


def deployment_body(spec: WorkloadSpec) -> Any:
    labels = {**MANAGED_BY, **spec.labels, "app.kubernetes.io/name": spec.name}
    selector = {"app.kubernetes.io/name": spec.name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(
            name=spec.name,
            labels=labels,
            annotations={CHANGE_CAUSE: spec.change_cause} if spec.change_cause else None,
        ),
        spec=client.V1DeploymentSpec(
            replicas=spec.replicas,
            selector=client.V1LabelSelector(match_labels=selector),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[
                        client.V1Container(
                            name=spec.name,
                            image=spec.image,
                            ports=[client.V1ContainerPort(container_port=spec.port)],
                        )
                    ]
                ),
            ),
        ),
    )


def ingress_body(spec: WorkloadSpec) -> Any:
    backend = client.V1IngressBackend(
        service=client.V1IngressServiceBackend(
            name=spec.name, port=client.V1ServiceBackendPort(number=spec.port)
        )
    )
    return client.V1Ingress(
        metadata=client.V1ObjectMeta(name=spec.name, labels={**MANAGED_BY, **spec.labels}),
        spec=client.V1IngressSpec(
            rules=[
                client.V1IngressRule(
                    host=spec.host,
                    http=client.V1HTTPIngressRuleValue(
                        paths=[
                            client.V1HTTPIngressPath(path="/", path_type="Prefix", backend=backend)
                        ]
                    ),
                )
            ]
        ),
    )


class Workloads:
    """The workload methods of `KubernetesCluster`, which gives the clients and `_call`."""

    name: str
    _apps: Any
    _networking: Any
    _timeout: float

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        raise NotImplementedError

    def _ensure_workload_sync(self, spec: WorkloadSpec) -> list[str]:
        changed: list[str] = []
        timeout = self._timeout
        try:
            self._apps.create_namespaced_deployment(
                spec.namespace, deployment_body(spec), _request_timeout=timeout
            )
            changed.append(f"Deployment/{spec.name}")
        except ApiException as exc:
            if not is_status(exc, 409):
                raise
            current = self._apps.read_namespaced_deployment(
                spec.name, spec.namespace, _request_timeout=timeout
            )
            images = [c.image for c in current.spec.template.spec.containers]
            if images[:1] != [spec.image]:
                patch = {
                    "metadata": {"annotations": {CHANGE_CAUSE: spec.change_cause}},
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": spec.name, "image": spec.image}]}
                        }
                    },
                }
                self._apps.patch_namespaced_deployment(
                    spec.name, spec.namespace, patch, _request_timeout=timeout
                )
                changed.append(f"Deployment/{spec.name}")
        if spec.host:
            try:
                self._networking.create_namespaced_ingress(
                    spec.namespace, ingress_body(spec), _request_timeout=timeout
                )
                changed.append(f"Ingress/{spec.name}")
            except ApiException as exc:
                if not is_status(exc, 409):
                    raise
        return changed

    async def ensure_workload(self, spec: WorkloadSpec) -> list[str]:
        return await self._call(
            f"deploying {spec.name} in {spec.namespace}", lambda: self._ensure_workload_sync(spec)
        )
