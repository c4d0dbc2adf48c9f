"""The one place that wires everything: `build_app(settings, ...)`.

Adapters and clients come in as arguments (tests pass stand-ins and fakes); nothing is
created at import time and nothing else reads the environment. The features the bot
has are the list in `build_app`, each added by its own `register()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

import features.access
import features.alerts
import features.approvals
import features.backups
import features.environments
import features.general
import features.new_service
import features.pipelines
import features.releases
import features.secrets
import features.verification
from app.http import build_web_app
from app.settings import Settings
from app.slack import SlackFrontDoor, build_bolt_app
from app.slack.clients import outbox_client, with_rate_limit_retries
from app.slack.direct import DirectDispatch
from app.slack.directory_events import DirectoryEvents
from app.systems import StartupError, build_adapters, open_database, safe_url
from catalog import Catalog
from catalog.load import load_platform_model
from engine.audit import DatabaseAuditLog
from engine.db import Database, DatabaseUnavailable
from engine.deliverer import Deliverer
from engine.directory import SlackDirectory
from engine.files import SlackFiles
from engine.messenger import OutboxMessenger, SlackModals
from engine.metrics import Metrics
from engine.outbox import Outbox
from engine.registry import DatabaseServiceRegistry
from engine.runs import RunEngine
from engine.tasks import Tasks, sleep_unless
from engine.timers import Clock, SystemClock, Timers
from features.alerts import Alerts
from features.approvals import Approvals
from features.kit.context import Ports
from features.kit.registry import FeatureRegistry
from features.releases import ReleaseDesk
from kernel.actions import Executor
from kernel.ports.platform import Directory
from kernel.ports.systems import Adapters

log = logging.getLogger(__name__)

CATALOG_REFRESH_SECONDS = 30.0
DRAIN_SECONDS = 3.0


@dataclass
class PlatformBot:
    """A built bot: start() serves Slack and runs the background loops until stop()."""

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
    features: FeatureRegistry
    approvals: Approvals
    alerts: Alerts
    tasks: Tasks
    timers: Timers
    direct: DirectDispatch | None = None
    port: int | None = None
    _runner: web.AppRunner | None = None
    _socket: Any = None  # AsyncSocketModeHandler, imported only in Socket Mode

    @property
    def stop_event(self) -> asyncio.Event:
        return self.tasks.stop

    async def start(self, *, workers: bool = True) -> None:
        """Learn our workspace, open the HTTP port (and Socket Mode), start the loops."""
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
            self.tasks.start("run-worker", self.engine.work)
            self.tasks.start("outbox", self.deliverer.run)
            self.tasks.start("catalog-refresh", self._refresh_catalog)
            self.tasks.start("timers", self.timers.loop)
            if isinstance(self.ports.directory, SlackDirectory):
                # Warm before serving, so no click waits for it; then every few minutes.
                with contextlib.suppress(DatabaseUnavailable):
                    await self.ports.directory.refresh()
                self.tasks.start("directory-refresh", self.ports.directory.refresh_loop)
            for background in self.features.loops:
                self.tasks.start(background.name, background.loop)
        log.info(
            "platform-bot started",
            extra={
                "port": self.port,
                "socket_mode": self.settings.socket_mode,
                "database": safe_url(self.db.url),
                "loops": self.tasks.names,
            },
        )

    async def _refresh_catalog(self, stop: asyncio.Event) -> None:
        """Learn of services other replicas registered (new-service), every 30 s."""
        while not await sleep_unless(stop, CATALOG_REFRESH_SECONDS):
            with contextlib.suppress(DatabaseUnavailable):
                await self.registry.refresh()

    async def stop(self) -> None:
        """Stop taking work, give the loops a few seconds, then close every connection."""
        started = time.monotonic()
        if self.direct is not None:  # handlers still working after their ack
            await self.direct.drain(DRAIN_SECONDS)
        self.engine.wakeup.set()
        self.outbox.notify()
        cancelled = await self.tasks.shutdown()
        loops_s = time.monotonic() - started
        if self._socket is not None:
            await self._socket.close_async()
        if self._runner is not None:
            await self._runner.cleanup()
        http_s = time.monotonic() - started - loops_s
        await self.deliverer.close()
        for adapter in vars(self.ports.adapters).values():
            close = getattr(adapter, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        with contextlib.suppress(Exception):
            await self.client.session.close() if self.client.session else None
        self.db.dispose()
        log.info(
            "platform-bot stopped",
            extra={
                "seconds": round(time.monotonic() - started, 2),
                "loops_seconds": round(loops_s, 2),
                "http_seconds": round(http_s, 2),
                "loops_cancelled": cancelled,
            },
        )

    async def serve_forever(self) -> None:
        await self.start()
        freeze_heap()
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
    clock: Clock | None = None,
) -> PlatformBot:
    """Build the bot from settings; raise StartupError with a fix-it message if it can't."""
    if catalog is None:
        catalog = Catalog(load_platform_model(settings.platform_config))
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    if token is None:
        raise StartupError("SLACK_BOT_TOKEN is not set; the bot cannot talk to Slack.")
    if not settings.socket_mode and settings.slack_signing_secret is None:
        raise StartupError(
            "SLACK_SIGNING_SECRET is not set; it is required in HTTP mode "
            "(or set SLACK_APP_TOKEN for Socket Mode)."
        )
    db = open_database(settings.database_url, auto_upgrade=auto_upgrade)
    metrics = Metrics()
    client = with_rate_limit_retries(
        slack_client or AsyncWebClient(token=token, base_url=settings.slack_api_url)
    )
    worker_id = settings.worker_id or f"{socket.gethostname()}-{os.getpid()}"
    outbox = Outbox(db)
    engine = RunEngine(
        db, outbox, metrics, (), worker_id=worker_id, lease=run_lease, operators=catalog.operators()
    )
    clock = clock or SystemClock()
    timers = Timers(db, clock=clock, worker_id=worker_id)
    services = DatabaseServiceRegistry(db, catalog)
    directory = directory or SlackDirectory(client, db)
    if adapters is None:
        adapters = build_adapters(settings, catalog)
    approvals = features.approvals.build(engine, catalog=catalog, directory=directory)
    alerts = features.alerts.build(
        db,
        outbox,
        catalog,
        token=_secret(settings.alertmanager_webhook_token),
        grafana=adapters.grafana,
        metrics=metrics,
    )
    pipelines = features.pipelines.GitLabWebhook(
        db, outbox, catalog, token=_secret(settings.gitlab_webhook_token)
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
        changes=approvals.gate,
        services=services,
    )

    # The features this bot has, each adding its commands, buttons, forms, executors,
    # webhooks and background loops. Features never import each other: what one needs
    # of another is a port (the alert's Rollback asks releases through `Releases`).
    registry = FeatureRegistry()
    verification = features.verification.build(
        ports, db, clock=clock, releases=ReleaseDesk(ports), files=SlackFiles(db, client)
    )
    features.general.register(registry)
    features.releases.register(registry, verifier=verification)
    features.approvals.register(registry, approvals)
    features.alerts.register(registry, alerts, releases=ReleaseDesk(ports), ports=ports)
    features.new_service.register(registry)
    features.pipelines.register(registry, pipelines)
    public_url = str(settings.public_url) if settings.public_url else None
    secret_desk = features.secrets.build(ports, db, clock=clock, public_url=public_url)
    features.secrets.register(registry, secret_desk)
    features.access.register(registry, features.access.build(ports, db, clock=clock))
    environments = features.environments.build(ports, db, clock=clock)
    pipelines.merge_requests = features.environments.register(registry, environments)
    features.backups.register(registry)
    features.verification.register(registry, verification)

    engine.register([*registry.build_executors(ports), *executors])
    for kind, handler in registry.timers.items():
        timers.register(kind, handler)
    door = SlackFrontDoor(
        db=db,
        outbox=outbox,
        metrics=metrics,
        ports=ports,
        features=registry,
        team_id=settings.slack_team_id,
    )
    direct = None if settings.socket_mode else DirectDispatch(door)
    bolt = build_bolt_app(
        door,
        client=client,
        signing_secret=_secret(settings.slack_signing_secret),
        socket_mode=settings.socket_mode,
        directory_events=(
            DirectoryEvents(directory) if isinstance(directory, SlackDirectory) else None
        ),
    )
    return PlatformBot(
        settings=settings,
        db=db,
        outbox=outbox,
        deliverer=Deliverer(db, outbox, outbox_client(client), metrics, worker_id=worker_id),
        engine=engine,
        door=door,
        bolt=bolt,
        web_app=build_web_app(
            bolt=None if settings.socket_mode else bolt,
            db=db,
            metrics=metrics,
            routes=registry.routes,
            signing_secret=_secret(settings.slack_signing_secret),
            direct=direct,
        ),
        metrics=metrics,
        client=client,
        registry=services,
        ports=ports,
        features=registry,
        approvals=approvals,
        alerts=alerts,
        tasks=Tasks(),
        timers=timers,
        direct=direct,
    )


def freeze_heap() -> None:
    """Move everything start-up made out of the garbage collector's sight (`gc.freeze`).

    A started bot holds some hundred thousand long-lived objects (modules, the catalog,
    SQLAlchemy's mappers, Bolt); every full collection walked them all, and under load a
    collection fell on a request about every few milliseconds (bench/ack.py: `create_task`
    was 17 % of the CPU). Objects made later are collected as before. Only for a process
    that serves (not for tests that build many bots: frozen cycles are never collected).
    """
    gc.collect()
    gc.freeze()


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


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


__all__ = [
    "DatabaseUnavailable",
    "PlatformBot",
    "StartupError",
    "build_app",
    "freeze_heap",
    "open_database",
]
