"""Backups and restores with Velero, from Slack.

actions      TakeBackup, RestoreCopy (into a new namespace), RestoreOver (over one)
commands     `/platform backup`, `/platform backups`, `/platform restore`
executors    the Run steps: check the storage location, create, watch the phase
render       outcomes, list lines, Velero's words for an unavailable location
schedules    the daily Schedule new-service makes and Clean up removes (`Backups` port)
"""

from __future__ import annotations

from features.backups.commands import BackupCommand, BackupsCommand, RestoreCommand
from features.backups.executors import Watching, executors_for
from features.kit.registry import FeatureRegistry


def register(registry: FeatureRegistry, watching: Watching | None = None) -> Watching:
    """Add the three commands and the executors; the Watching is theirs (tests shorten
    its poll)."""
    watching = watching or Watching()
    registry.add(BackupCommand(), BackupsCommand(), RestoreCommand())
    registry.executors(executors_for(watching))
    return watching


__all__ = ["Watching", "register"]
