"""The golden path: `/platform new-service`, and Clean up of one that failed.

request       the Actions, the checks, the free-name checks, proposing
command       `/platform new-service` (modal, or one line)
modal         the form (its template and team menus, the chosen template's fields)
              and its submission
provisioning  the Run: GitLab, namespaces, Vault, catalog, announcement
cleanup       Clean up: undo a failed one, step by step
"""

from __future__ import annotations

from features.kit.registry import FeatureRegistry
from features.new_service.cleanup import CleanUpButton, executors
from features.new_service.command import NewServiceCommand
from features.new_service.modal import NewServiceForm, TeamOptions, TemplateChosen, TemplateOptions


def register(registry: FeatureRegistry) -> None:
    """Add the command, its form (with its menus), Clean up, and the executors."""
    registry.add(
        NewServiceCommand(),
        NewServiceForm(),
        TemplateOptions(),
        TeamOptions(),
        TemplateChosen(),
        CleanUpButton(),
    )
    registry.executors(executors)
