"""Connections to the world: the database (checked and migrated) and the real adapter
of every external system the settings configure.

Each SDK is imported only when its system is configured, so a bot without GitLab never
loads python-gitlab (and starts faster, in less memory).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from app.settings import Settings
from catalog import Catalog
from engine.db import Database
from engine.migrate import current_revision, head_revision, schema_is_current, upgrade
from kernel.errors import AdapterError
from kernel.ports.systems import Adapters


class StartupError(Exception):
    """The bot cannot start; the message says what to fix."""


def build_adapters(settings: Settings, catalog: Catalog) -> Adapters:
    """The real adapters for every external system the settings configure.

    Each SDK is imported only when its system is configured, so a bot without GitLab
    never loads python-gitlab. A system left unconfigured is None in `Adapters`, and
    the features that need it say which variable to set.
    """

    def secret(value: SecretStr | None) -> str:
        return value.get_secret_value() if value is not None else ""

    found: dict[str, Any] = {}
    if settings.vault_addr and settings.vault_token:
        from adapters.vault import VaultSecretStore

        found["vault"] = VaultSecretStore(str(settings.vault_addr), secret(settings.vault_token))
        if catalog.model.database_servers:
            from adapters.postgres import VaultPostgres

            found["databases"] = VaultPostgres(
                str(settings.vault_addr), secret(settings.vault_token)
            )
    if settings.gitlab_url and settings.gitlab_token:
        from adapters.gitlab import GitLabCodeHost

        found["gitlab"] = GitLabCodeHost(str(settings.gitlab_url), secret(settings.gitlab_token))
    if settings.kubeconfig is not None or settings.kubernetes_service_host:
        from adapters.kubernetes import KubernetesClusters

        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        clusters = sorted({env.cluster for env in catalog.model.environments.values()})
        try:
            found["kubernetes"] = KubernetesClusters.from_kubeconfig(kubeconfig, contexts=clusters)
            from adapters.velero import VeleroClusters

            found["velero"] = VeleroClusters(found["kubernetes"])
        except AdapterError as exc:
            raise StartupError(
                f"{exc.message}. Each environment's `cluster` in PLATFORM_CONFIG must be a "
                "context in KUBECONFIG."
            ) from None
    if settings.argocd_url and settings.argocd_token:
        from adapters.argocd import ArgoCDClient

        found["argocd"] = ArgoCDClient(
            str(settings.argocd_url),
            secret(settings.argocd_token),
            project=settings.argocd_project,
        )
    if settings.alertmanager_url:
        from adapters.alertmanager import AlertmanagerClient

        found["alertmanager"] = AlertmanagerClient(str(settings.alertmanager_url))
    if settings.prometheus_url:
        from adapters.prometheus import PrometheusClient

        found["prometheus"] = PrometheusClient(str(settings.prometheus_url))
    if settings.grafana_url:
        from adapters.grafana import GrafanaLinks

        found["grafana"] = GrafanaLinks(str(settings.grafana_url))
    return Adapters(**found)


def open_database(
    url: str, *, auto_upgrade: bool | None = None, check_schema: bool = True
) -> Database:
    """Connect, and check the schema is current (upgrading SQLite, or when asked);
    `check_schema=False` only connects (the `db` commands look at the schema)."""
    db = Database(url)
    try:
        with db.engine.connect():
            pass
    except Exception as exc:
        db.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StartupError(
            f"Cannot reach the database at {safe_url(url)}: {reason}. Check DATABASE_URL."
        ) from None
    if auto_upgrade is None:
        auto_upgrade = not db.is_postgres
    if not check_schema and not auto_upgrade:
        return db
    if schema_is_current(db.engine):  # the usual start: no Alembic to import
        return db
    if auto_upgrade:
        upgrade(db.engine)
    else:
        current, head = current_revision(db.engine), head_revision()
        if current != head:
            db.dispose()
            raise StartupError(
                f"The database schema at {safe_url(url)} is not current "
                f"({current or 'empty'}, want {head}). Run `platform-bot db upgrade` first."
            )
    return db


def safe_url(url: str) -> str:
    """A database URL fit for logs and messages: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable DATABASE_URL>"
