"""Secrets, self-service: values never pass through Slack.

actions      SetSecret, DeleteSecret, RollbackSecret (none holds a value)
tables       single-use links, encrypted values waiting for their Run
desk         links, receiving a value, proposing its write; the sweep that discards
page         GET/POST /secrets/set/<token>: the bot's one HTML page
modal        the fallback without a PUBLIC_URL (the value passes through Slack)
command      `/platform secret set|list|delete|rollback`
executors    the Run steps, on the SecretStore port (Vault KV v2 and transit)
"""

from __future__ import annotations

from engine.db import Database
from engine.timers import Clock
from features.kit.context import Ports
from features.kit.registry import FeatureRegistry
from features.secrets.command import SecretCommand
from features.secrets.desk import SecretsDesk
from features.secrets.executors import executors_for
from features.secrets.modal import OpenSecretModal, SecretModal
from features.secrets.page import PATH, SecretPage


def build(ports: Ports, db: Database, *, clock: Clock, public_url: str | None) -> SecretsDesk:
    """The desk the command, the page, the modal and the executors share."""
    return SecretsDesk(ports, db, clock=clock, public_url=public_url)


def register(registry: FeatureRegistry, desk: SecretsDesk) -> None:
    """Add `secret`, the page (when the bot has a PUBLIC_URL), the modal, the executors
    and the sweep that discards values nobody will write."""
    registry.add(SecretCommand(desk), OpenSecretModal(desk), SecretModal(desk))
    page = SecretPage(desk)
    registry.route("GET", PATH, page.get)
    registry.route("POST", PATH, page.post)
    registry.executors(executors_for(desk))
    registry.loop("secrets-sweep", desk.sweep)


__all__ = ["SecretsDesk", "build", "register"]
