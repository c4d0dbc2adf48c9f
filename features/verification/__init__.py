"""Deploys that verify themselves: health queries watched after every deploy and rollback,
a verdict in the deploy's thread, a Roll back button or the bot's own rollback.

queries      the PromQL each service is watched with (catalog, or the golden path's)
verdict      judging the window after against the window before (pure)
desk         `RolloutVerifier` for releases; the durable timer's check; auto-rollback
messages     the verdict as Slack shows it
chart        the PNG: queries over time, the rollout marked, before vs after (matplotlib)
metrics      `/platform metrics <service> <env> [--since 6h]`: the chart on demand
buttons      Roll back under a degraded verdict (the normal flow, approvals included)
tables       one row per verified release
"""

from __future__ import annotations

from engine.db import Database
from engine.timers import Clock
from features.kit.context import Ports
from features.kit.registry import FeatureRegistry
from features.verification.buttons import RollBackButton
from features.verification.desk import TIMER_KIND, QueryBudget, VerificationDesk
from features.verification.metrics import Metrics
from kernel.ports.files import FileUploads
from kernel.ports.platform import Releases


def build(
    ports: Ports,
    db: Database,
    *,
    clock: Clock,
    releases: Releases,
    files: FileUploads | None = None,
) -> VerificationDesk:
    """The desk releases tell about finished rollouts (`files` shares the charts)."""
    return VerificationDesk(ports, db, clock=clock, releases=releases, files=files)


def register(registry: FeatureRegistry, desk: VerificationDesk) -> None:
    """Add `/platform metrics`, the Roll back button and the verification timer."""
    registry.add(Metrics(desk), RollBackButton(desk.db, desk.releases))
    registry.timer(TIMER_KIND, desk.on_timer)


__all__ = ["QueryBudget", "VerificationDesk", "build", "register"]
