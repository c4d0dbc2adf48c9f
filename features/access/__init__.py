"""Temporary access: a RoleBinding that ends by itself, on a durable timer.

actions      GrantAccess, ExtendAccess, RevokeAccess
tables       grants, from asked to revoked
desk         cluster identities, grants, the `access.revoke` and `access.warn` timers
command      `/platform access ...`, list, revoke, extend
buttons      Extend, on the warning before the end
executors    the Run steps, on the Cluster port (RoleBindings)
"""

from __future__ import annotations

from engine.db import Database
from engine.timers import Clock
from features.access.buttons import ExtendButton
from features.access.command import AccessCommand
from features.access.desk import REVOKE, WARN, AccessDesk
from features.access.executors import executors_for
from features.kit.context import Ports
from features.kit.registry import FeatureRegistry


def build(ports: Ports, db: Database, *, clock: Clock) -> AccessDesk:
    return AccessDesk(ports, db, clock=clock)


def register(registry: FeatureRegistry, desk: AccessDesk) -> None:
    """Add `access`, Extend, the executors and the two timer kinds."""
    registry.add(AccessCommand(desk), ExtendButton(desk))
    registry.executors(executors_for(desk))
    registry.timer(REVOKE, desk.on_revoke_due)
    registry.timer(WARN, desk.on_warn_due)


__all__ = ["AccessDesk", "build", "register"]
