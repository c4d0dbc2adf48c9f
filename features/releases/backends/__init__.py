"""The deploy backends: one module per system, one `ReleaseBackend` Protocol."""

from __future__ import annotations

from features.kit.context import Ports
from features.releases.backends.argocd import ArgoCDBackend
from features.releases.backends.base import ReleaseBackend, Watch
from features.releases.backends.kubernetes import KubernetesBackend

BACKENDS: dict[str, type[KubernetesBackend] | type[ArgoCDBackend]] = {
    KubernetesBackend.name: KubernetesBackend,
    ArgoCDBackend.name: ArgoCDBackend,
}
"""Every backend by the name an environment's `backend` gives in platform.yml."""


def backend_for(ports: Ports, name: str) -> ReleaseBackend:
    """The backend an environment names (the catalog has checked the name)."""
    return BACKENDS[name](ports)


__all__ = [
    "BACKENDS",
    "ArgoCDBackend",
    "KubernetesBackend",
    "ReleaseBackend",
    "Watch",
    "backend_for",
]
