"""The golden path: `/platform new-service`, and Clean up of one that failed.

request       the Actions, the checks, the free-name checks, proposing
command       `/platform new-service` (modal, or one line)
modal         the form and its submission
provisioning  the Run: GitLab, namespaces, Vault, catalog, announcement
cleanup       Clean up: undo a failed one, step by step
"""

from __future__ import annotations

from features.kit.registry import FeatureRegistry
from features.new_service.cleanup import CleanUpButton, executors
from features.new_service.command import NewServiceCommand
from features.new_service.modal import NewServiceForm


def register(registry: FeatureRegistry) -> None:
    """Add the command, its form, Clean up, and the executors."""
    registry.add(NewServiceCommand(), NewServiceForm(), CleanUpButton())
    registry.executors(executors)
