"""GitLab pipeline events as one message per pipeline in the service's channel, updated
in place, with deploy jobs told in its thread (features.pipelines.webhook)."""

from __future__ import annotations

from features.kit.registry import FeatureRegistry
from features.pipelines.webhook import GitLabWebhook


def register(registry: FeatureRegistry, webhook: GitLabWebhook) -> None:
    """Serve POST /webhooks/gitlab."""
    registry.route("POST", "/webhooks/gitlab", webhook.receive)


__all__ = ["GitLabWebhook", "register"]
