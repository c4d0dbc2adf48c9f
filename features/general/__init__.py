"""General commands: help, whoami, audit, and Retry on a failed Run's progress message."""

from __future__ import annotations

from features.general.audit import Audit
from features.general.help import Help
from features.general.runs import RetryRun
from features.general.whoami import WhoAmI
from features.kit.registry import FeatureRegistry


def register(registry: FeatureRegistry) -> None:
    """Add help (which lists every command registered, whenever asked), whoami, audit
    and the Retry button."""
    registry.add(Help(registry.commands), WhoAmI(), Audit(), RetryRun())
