"""Environments on demand: a namespace with the service deployed in it, for a while, and
namespaces of a team's own (issue 14; the per-environment Postgres database is the golden
path's, not here yet).

actions      CreateNamespace, CreateEnvironment (and -Large), ExtendEnvironment (and
             -BeyondMax), DeleteEnvironment
tables       environments, from asked to deleted
desk         reads, team limits, the `env.expire` and `env.warn` timers, state changes
planning     from what was asked to a CreateEnvironment (limits, budget, image)
command      `/platform env create|list|status|extend|delete`
namespace    `/platform namespace create <team> <name>` and its executor
buttons      Extend, Delete now, and the confirmation's Delete
executors    the Run steps, on the Cluster and CodeHost ports
preview      merge request events: a preview environment per labelled merge request
"""

from __future__ import annotations

from engine.db import Database
from engine.timers import Clock
from features.environments import namespace
from features.environments.buttons import ConfirmDeleteButton, DeleteButton, ExtendButton
from features.environments.command import EnvCommand
from features.environments.desk import EXPIRE, WARN, EnvironmentDesk
from features.environments.executors import executors_for
from features.environments.namespace import NamespaceCommand
from features.environments.preview import Previews
from features.kit.context import Ports
from features.kit.registry import FeatureRegistry


def build(ports: Ports, db: Database, *, clock: Clock) -> EnvironmentDesk:
    return EnvironmentDesk(ports, db, clock=clock)


def register(registry: FeatureRegistry, desk: EnvironmentDesk) -> Previews:
    """Add `env`, `namespace`, the buttons, the executors and the two timer kinds; the
    merge request hook the GitLab webhook hands its merge request events to."""
    registry.add(
        EnvCommand(desk),
        NamespaceCommand(),
        ExtendButton(desk),
        DeleteButton(desk),
        ConfirmDeleteButton(desk),
    )
    registry.executors(executors_for(desk))
    registry.executors(namespace.executors)
    registry.timer(EXPIRE, desk.on_expire_due)
    registry.timer(WARN, desk.on_warn_due)
    return Previews(desk)


__all__ = ["EnvironmentDesk", "Previews", "build", "register"]
