"""Deploys and rollbacks, history and status, on Kubernetes and on Argo CD.

actions      Deploy, Rollback, SetAutoSync: exactly what will change
targets      where a service runs in an environment, who may change it
revisions    git SHAs as Argo CD reports them and as people type them
planning     from what was typed to a proposed Action (one way for every caller)
backends/    the ReleaseBackend Protocol; kubernetes and argocd implementations
executors    the Run steps: change, watch the rollout, Grafana link
deploy, rollback, history, status     the commands
buttons      Argo CD's auto-sync buttons
port         the `Releases` port other features ask (the alert's Rollback)
"""

from __future__ import annotations

from features.kit.registry import FeatureRegistry
from features.releases.buttons import RollBackWithoutAutoSync, TurnAutoSyncBackOn
from features.releases.deploy import DeployCommand
from features.releases.executors import executors
from features.releases.history import History
from features.releases.port import ReleaseDesk
from features.releases.rollback import RollbackCommand
from features.releases.status import Status
from kernel.ports.verification import RolloutVerifier


def register(registry: FeatureRegistry, *, verifier: RolloutVerifier | None = None) -> None:
    """Add the release commands, buttons and executors (`verifier` hears of every
    finished rollout)."""
    registry.add(
        DeployCommand(),
        RollbackCommand(),
        History(),
        Status(),
        RollBackWithoutAutoSync(),
        TurnAutoSyncBackOn(),
    )
    registry.executors(lambda ports: executors(ports, verifier))


__all__ = ["ReleaseDesk", "register"]
