"""`/velero ...`: the console's hand on Velero's stand-in in each cluster, to show what the
bot says when Velero has trouble (sandbox.standins.velero).

  /velero fail-item <env> <plural>/<namespace>/<name> <error...>
      the next backup or restore of that object meets the error (PartiallyFailed)
  /velero location <env> Available|Unavailable [message...]
      the default BackupStorageLocation's phase and message, as Velero validates it
"""

from __future__ import annotations

from sandbox.app.stack import SandboxStack
from sandbox.standins.velero import VeleroStandIn

USAGE = (
    "Usage: /velero fail-item <env> <plural>/<namespace>/<name> <error>, or "
    "/velero location <env> Available|Unavailable [message]"
)


class FaultError(Exception):
    """What the person typed cannot be done; one line says why."""


def velero_fault(stack: SandboxStack, text: str) -> str:
    """Do it; one line that says what changed."""
    words = text.split()
    if len(words) < 3:
        raise FaultError(USAGE)
    verb, env, what, rest = words[0], words[1], words[2], " ".join(words[3:])
    environments = stack.bot.ports.catalog.model.environments
    if env not in environments:
        raise FaultError(
            f"There is no environment {env!r}; the sandbox has {', '.join(environments)}."
        )
    velero: VeleroStandIn | None = stack.clusters[environments[env].cluster].velero
    if velero is None:
        raise FaultError(f"Velero is not installed in {env}'s cluster.")
    if verb == "fail-item" and what.count("/") == 2 and rest:
        velero.failing_items[what] = rest
        return f"(Velero in {env}: backing up or restoring {what} fails: {rest})"
    if verb == "location" and what in ("Available", "Unavailable"):
        velero.add_location("default", phase=what, message=rest)
        return f"(Velero in {env}: storage location default is {what})"
    raise FaultError(USAGE)
