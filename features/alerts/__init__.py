"""Alertmanager alerts as one living Slack thread per alert group.

receiver     POST /alerts/alertmanager: bearer token, bounded, validated, stored
worker       stored notifications -> groups, alerts, parent messages, coalesced replies
groups       one group: created once (HA peers, replicas), locked, re-rendered;
             and the AlertGroups port the buttons use
threads      routing through the catalog; rendering the parent and the replies
buttons      Ack, Silence (and its form), Unsilence, Show query, Rollback
payload      Alertmanager's webhook payload (version 4), validated
tables       this feature's tables
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from catalog import Catalog
from engine.db import Database
from engine.metrics import Metrics
from engine.outbox import Outbox
from features.alerts.buttons import (
    AckButton,
    RollbackButton,
    ShowQueryButton,
    SilenceButton,
    SilenceForm,
    UnsilenceButton,
)
from features.alerts.groups import GroupStore
from features.alerts.receiver import AlertReceiver
from features.alerts.silences import KIND as SILENCE
from features.alerts.silences import SilenceLater
from features.alerts.worker import AlertWorker
from features.kit.context import Ports
from features.kit.registry import FeatureRegistry
from kernel.ports.platform import Releases
from kernel.ports.systems import DashboardLinks


@dataclass(frozen=True)
class Alerts:
    """The alerts feature of one bot: its receiver, worker and group store."""

    receiver: AlertReceiver
    worker: AlertWorker
    groups: GroupStore


def build(
    db: Database,
    outbox: Outbox,
    catalog: Catalog,
    *,
    token: str | None,
    grafana: DashboardLinks | None = None,
    metrics: Metrics | None = None,
    window: float = 2.0,
    poll_interval: float = 2.0,
) -> Alerts:
    """The receiver, worker and store, sharing a wake-up and (on SQLite) write turns."""
    wakeup, turns = asyncio.Event(), asyncio.Lock()
    groups = GroupStore(db, outbox, catalog, grafana=grafana, window=window)
    return Alerts(
        receiver=AlertReceiver(db, token=token, wakeup=wakeup, turns=turns, metrics=metrics),
        worker=AlertWorker(
            db,
            outbox,
            groups,
            wakeup=wakeup,
            turns=turns,
            poll_interval=poll_interval,
            metrics=metrics,
        ),
        groups=groups,
    )


def register(
    registry: FeatureRegistry, alerts: Alerts, *, releases: Releases, ports: Ports | None = None
) -> None:
    """Add the webhook, the worker loop, the thread's buttons, and (with the ports) the
    timer that creates a silence after the form has been answered."""
    registry.route("POST", "/alerts/alertmanager", alerts.receiver.receive)
    registry.loop("alert-worker", alerts.worker.work)
    groups = alerts.groups
    later = SilenceLater(groups.db, groups, ports) if ports is not None else None
    if later is not None:
        registry.timer(SILENCE, later.on_due)
    registry.add(
        AckButton(groups),
        SilenceButton(groups),
        SilenceForm(groups, later),
        UnsilenceButton(groups),
        ShowQueryButton(groups),
        RollbackButton(groups, releases),
    )
