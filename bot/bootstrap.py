"""The one place that wires everything: `build_app(settings, ...)`.

Adapters and clients come in as arguments (tests pass stand-ins and fakes); nothing is
created at import time and nothing else reads the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import SecretStr
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.engine import make_url

from adapters import Adapters
from adapters.protocols import AdapterError
from bot.alert_intake import AlertIntake
from bot.audit import DatabaseAuditLog
from bot.changes import ChangeGate
from bot.db import Database, DatabaseUnavailable
from bot.directory import SlackDirectory
from bot.domain import Directory, Executor
from bot.gitlab_webhook import GitLabWebhook
from bot.http import build_web_app
from bot.messenger import OutboxMessenger, SlackModals
from bot.metrics import Metrics
from bot.migrate import current_revision, head_revision, upgrade
from bot.outbox import Deliverer, Outbox
from bot.plugins import discover as discover_features
from bot.ports import Ports
from bot.registry import DatabaseServiceRegistry
from bot.runs import RunEngine
from bot.settings import Settings
from bot.slack_app import SlackFrontDoor, build_bolt_app
from catalog import Catalog
from catalog.load import load_platform_model

log = logging.getLogger(__name__)

CATALOG_REFRESH_SECONDS = 30.0


class StartupError(Exception):
    """The bot cannot start; the message says what to fix."""


@dataclass
class PlatformBot:
    """A built bot: start() serves Slack and runs the workers until stop()."""

    settings: Settings
    db: Database
    outbox: Outbox
    deliverer: Deliverer
    engine: RunEngine
    door: SlackFrontDoor
    bolt: AsyncApp
    web_app: web.Application
    metrics: Metrics
    client: AsyncWebClient
    registry: DatabaseServiceRegistry
    ports: Ports
    gate: ChangeGate
    alerts: AlertIntake
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    port: int | None = None
    _runner: web.AppRunner | None = None
    _socket: Any = None  # AsyncSocketModeHandler, imported only in Socket Mode
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, *, workers: bool = True) -> None:
        """Learn our workspace, open the HTTP port (and Socket Mode), start the workers."""
        if self.door.team_id is None:
            self.door.team_id = await _our_team_id(self.client)
        await self.registry.refresh()
        self._runner = web.AppRunner(self.web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        if self.settings.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            assert self.settings.slack_app_token is not None
            self._socket = AsyncSocketModeHandler(
                self.bolt, self.settings.slack_app_token.get_secret_value(), web_client=self.client
            )
            await self._socket.connect_async()
        if workers:
            self._tasks = [
                asyncio.create_task(self.engine.work(self.stop_event), name="run-worker"),
                asyncio.create_task(self.deliverer.run(self.stop_event), name="outbox"),
                asyncio.create_task(self.alerts.work(self.stop_event), name="alert-intake"),
                asyncio.create_task(self._refresh_catalog(), name="catalog-refresh"),
                asyncio.create_task(self._sweep_approvals(), name="approval-sweep"),
            ]
        log.info(
            "platform-bot started",
            extra={
                "port": self.port,
                "socket_mode": self.settings.socket_mode,
                "database": _safe_url(self.db.url),
            },
        )

    async def _refresh_catalog(self) -> None:
        """Learn of services other replicas registered (new-service), every 30 s."""
        while not self.stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), timeout=CATALOG_REFRESH_SECONDS)
            if not self.stop_event.is_set():
                with contextlib.suppress(DatabaseUnavailable):
                    await self.registry.refresh()

    async def _sweep_approvals(self) -> None:
        """Expire approval requests nobody decided in time (every few seconds)."""
        await self.gate.sweep(self.stop_event)

    async def stop(self) -> None:
        self.stop_event.set()
        self.engine.wakeup.set()
        self.outbox.notify()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        if self._socket is not None:
            await self._socket.close_async()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.deliverer.close()
        for adapter in vars(self.ports.adapters).values():
            close = getattr(adapter, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        with contextlib.suppress(Exception):
            await self.client.session.close() if self.client.session else None
        self.db.dispose()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await self.stop_event.wait()
        finally:
            await self.stop()


def build_app(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    executors: Iterable[Executor] = (),
    slack_client: AsyncWebClient | None = None,
    directory: Directory | None = None,
    adapters: Adapters | None = None,
    auto_upgrade: bool | None = None,
    run_lease: timedelta = timedelta(seconds=30),
) -> PlatformBot:
    """Build the bot from settings; raise StartupError with a fix-it message if it can't."""
    if catalog is None:
        catalog = Catalog(load_platform_model(settings.platform_config))
    db = open_database(settings.database_url, auto_upgrade=auto_upgrade)
    metrics = Metrics()
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    if token is None:
        raise StartupError("SLACK_BOT_TOKEN is not set; the bot cannot talk to Slack.")
    if not settings.socket_mode and settings.slack_signing_secret is None:
        raise StartupError(
            "SLACK_SIGNING_SECRET is not set; it is required in HTTP mode "
            "(or set SLACK_APP_TOKEN for Socket Mode)."
        )
    client = slack_client or AsyncWebClient(token=token, base_url=settings.slack_api_url)
    worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    outbox = Outbox(db)
    engine = RunEngine(db, outbox, metrics, (), worker_id=worker_id, lease=run_lease)
    registry = DatabaseServiceRegistry(db, catalog)
    directory = directory or SlackDirectory(client)
    gate = ChangeGate(engine, catalog=catalog, directory=directory)
    if adapters is None:
        adapters = build_adapters(settings, catalog)
    webhook_token = settings.alertmanager_webhook_token
    alert_intake = AlertIntake(
        db,
        outbox,
        catalog,
        token=webhook_token.get_secret_value() if webhook_token else None,
        grafana=adapters.grafana,
        metrics=metrics,
    )
    gitlab_token = settings.gitlab_webhook_token
    gitlab_webhook = GitLabWebhook(
        db,
        outbox,
        catalog,
        token=gitlab_token.get_secret_value() if gitlab_token else None,
    )
    ports = Ports(
        catalog=catalog,
        directory=directory,
        audit=DatabaseAuditLog(db),
        runs=engine,
        run_control=engine,
        messenger=OutboxMessenger(outbox),
        modals=SlackModals(client),
        adapters=adapters,
        changes=gate,
        services=registry,
        approvals=gate,
        alerts=alert_intake,
    )
    features = discover_features()
    engine.register([*features.executors(ports), *executors])
    door = SlackFrontDoor(
        db=db,
        outbox=outbox,
        metrics=metrics,
        ports=ports,
        features=features,
        team_id=settings.slack_team_id,
    )
    secret = settings.slack_signing_secret
    bolt = build_bolt_app(
        door,
        client=client,
        signing_secret=secret.get_secret_value() if secret else None,
        socket_mode=settings.socket_mode,
    )
    return PlatformBot(
        settings=settings,
        db=db,
        outbox=outbox,
        deliverer=Deliverer(db, outbox, client, metrics, worker_id=worker_id),
        engine=engine,
        door=door,
        bolt=bolt,
        web_app=build_web_app(
            bolt=None if settings.socket_mode else bolt,
            db=db,
            metrics=metrics,
            alertmanager=alert_intake.receive,
            gitlab=gitlab_webhook.receive,
        ),
        metrics=metrics,
        client=client,
        registry=registry,
        ports=ports,
        gate=gate,
        alerts=alert_intake,
    )


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
    if settings.gitlab_url and settings.gitlab_token:
        from adapters.gitlab import GitLabCodeHost

        found["gitlab"] = GitLabCodeHost(str(settings.gitlab_url), secret(settings.gitlab_token))
    if settings.kubeconfig is not None or settings.kubernetes_service_host:
        from adapters.kubernetes import KubernetesClusters

        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        clusters = sorted({env.cluster for env in catalog.model.environments.values()})
        try:
            found["kubernetes"] = KubernetesClusters.from_kubeconfig(kubeconfig, contexts=clusters)
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


def open_database(url: str, *, auto_upgrade: bool | None = None) -> Database:
    """Connect, and check the schema is current (upgrading SQLite, or when asked)."""
    db = Database(url)
    try:
        with db.engine.connect():
            pass
    except Exception as exc:
        db.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StartupError(
            f"Cannot reach the database at {_safe_url(url)}: {reason}. Check DATABASE_URL."
        ) from None
    if auto_upgrade is None:
        auto_upgrade = not db.is_postgres
    if auto_upgrade:
        upgrade(db.engine)
    else:
        current, head = current_revision(db.engine), head_revision()
        if current != head:
            db.dispose()
            raise StartupError(
                f"The database schema at {_safe_url(url)} is not current "
                f"({current or 'empty'}, want {head}). Run `platform-bot db upgrade` first."
            )
    return db


async def _our_team_id(client: AsyncWebClient) -> str:
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        raise StartupError(
            f"Slack refused the bot token ({exc.response.get('error')}); check SLACK_BOT_TOKEN."
        ) from None
    except Exception as exc:
        raise StartupError(f"Cannot reach Slack at {client.base_url}: {exc}") from None
    return str(response["team_id"])


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable DATABASE_URL>"


__all__ = ["DatabaseUnavailable", "PlatformBot", "StartupError", "build_app", "open_database"]
