"""One module per external system, each with a small Protocol and one real implementation.

`Adapters` is the bundle handed to commands and executors; a field is None when that
system is not configured, and the feature that needs it says so to the user. The
Protocols live in `adapters.protocols` (no SDK imports); `adapters/<system>.py` holds
the real implementation on its SDK and is imported only by `bot.bootstrap`.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.protocols import (
    AdapterError,
    AlertSilences,
    Clusters,
    CodeHost,
    DashboardLinks,
    GitOps,
    MetricsQuery,
    SecretStore,
)


@dataclass(frozen=True)
class Adapters:
    """The external systems this bot is configured to talk to (None: not configured)."""

    gitlab: CodeHost | None = None
    kubernetes: Clusters | None = None
    vault: SecretStore | None = None
    argocd: GitOps | None = None
    alertmanager: AlertSilences | None = None
    prometheus: MetricsQuery | None = None
    grafana: DashboardLinks | None = None

    def require(self, name: str) -> object:
        """The adapter called `name`, or AdapterError saying which variable configures it."""
        value = getattr(self, name)
        if value is None:
            variable = {
                "gitlab": "GITLAB_URL and GITLAB_TOKEN",
                "kubernetes": "KUBECONFIG",
                "vault": "VAULT_ADDR and VAULT_TOKEN",
                "argocd": "ARGOCD_URL and ARGOCD_TOKEN",
                "alertmanager": "ALERTMANAGER_URL",
                "prometheus": "PROMETHEUS_URL",
                "grafana": "GRAFANA_URL",
            }[name]
            raise AdapterError(name, f"not configured on this bot (set {variable})")
        return value
