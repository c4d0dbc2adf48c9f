"""Real Prometheus and Alertmanager for integration tests, and a webhook recorder.

Import the fixtures you use into your test module (pytest finds fixtures by name there):

    from tests.integration.observability_fixtures import (  # noqa: F401
        alertmanager_factory, metric_target, prometheus_factory,
    )

    async def test_alert_fires(metric_target, alertmanager_factory, prometheus_factory):
        alertmanager = await alertmanager_factory(webhook_url=..., bearer_token="t")
        await prometheus_factory(rules_yaml=RULES, targets=[metric_target.base_url],
                                 alertmanager_url=alertmanager.url)
        metric_target.set("checkout_errors", 1, {"service": "checkout"})

The fixtures are function-scoped (started and stopped around each test). To pay the
start-up once per module, use `observability_stack` in a module-scoped fixture with
`loop_scope="module"` (and run the tests on the module's loop), as
tests/integration/test_observability.py does. A missing binary skips the test with the
command that installs it.

Timing to expect: Prometheus sends its first alert to Alertmanager about 5 s after it
starts (its target and Alertmanager discovery publishes updates every 5 s), then
`group_wait`; later notifications follow within 2-3 s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import pytest_asyncio
from aiohttp import web

from sandbox.standins._server import LoopbackServer
from sandbox.standins.observability import (
    AlertmanagerServer,
    MetricTarget,
    ObservabilityUnavailable,
    PrometheusServer,
)


@dataclass(frozen=True)
class Delivery:
    """One webhook POST as received: the Authorization header and the JSON body."""

    authorization: str | None
    body: dict[str, Any]


class WebhookRecorder(LoopbackServer):
    """Records every `POST /webhook` (answers 200), for tests that check what
    Alertmanager sends without the bot in between."""

    service: ClassVar[str] = "webhook recorder"

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[Delivery] = []
        self._arrived = asyncio.Condition()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/webhook", self._receive)

    @property
    def url(self) -> str:
        return f"{self.base_url}/webhook"

    async def _receive(self, request: web.Request) -> web.Response:
        body = json.loads(await request.text())
        async with self._arrived:
            self.deliveries.append(Delivery(request.headers.get("Authorization"), body))
            self._arrived.notify_all()
        return web.Response(text="ok")

    async def wait_for(
        self,
        predicate: Callable[[Delivery], bool],
        *,
        timeout: float = 20.0,  # noqa: ASYNC109
    ) -> Delivery:
        """The first delivery (already received or still to come) matching `predicate`."""
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for delivery in self.deliveries:
                    if predicate(delivery):
                        return delivery
                await self._arrived.wait()


async def _enter(stack: AsyncExitStack, server: Any) -> None:
    """Start `server` inside `stack`; skip the test if its binary is not installed."""
    try:
        await stack.enter_async_context(server)
    except ObservabilityUnavailable as exc:
        pytest.skip(str(exc))


@dataclass
class ObservabilityStack:
    """A metric target scraped by Prometheus, which notifies Alertmanager."""

    target: MetricTarget
    alertmanager: AlertmanagerServer
    prometheus: PrometheusServer


@asynccontextmanager
async def observability_stack(
    *,
    rules_yaml: str,
    webhook_url: str,
    bearer_token: str | None,
    group_by: Sequence[str] = ("alertname", "service"),
) -> AsyncIterator[ObservabilityStack]:
    """Start a MetricTarget, Alertmanager (posting to `webhook_url`) and Prometheus."""
    async with AsyncExitStack() as stack:
        target = MetricTarget()
        alertmanager = AlertmanagerServer(
            webhook_url=webhook_url, bearer_token=bearer_token, group_by=group_by
        )
        await _enter(stack, target)
        await _enter(stack, alertmanager)
        prometheus = PrometheusServer(
            rules_yaml=rules_yaml, targets=[target.base_url], alertmanager_url=alertmanager.url
        )
        await _enter(stack, prometheus)
        yield ObservabilityStack(target, alertmanager, prometheus)


@pytest_asyncio.fixture
async def metric_target() -> AsyncIterator[MetricTarget]:
    """A running MetricTarget; `set()` the gauges your rules watch."""
    async with MetricTarget() as target:
        yield target


@pytest_asyncio.fixture
async def webhook_recorder() -> AsyncIterator[WebhookRecorder]:
    """A running WebhookRecorder; give Alertmanager its `.url`."""
    async with WebhookRecorder() as recorder:
        yield recorder


@pytest_asyncio.fixture
async def alertmanager_factory() -> AsyncIterator[Callable[..., Awaitable[AlertmanagerServer]]]:
    """`await alertmanager_factory(webhook_url=..., bearer_token=...)`: a running
    AlertmanagerServer (same keywords), stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(**options: Any) -> AlertmanagerServer:
            server = AlertmanagerServer(**options)
            await _enter(stack, server)
            return server

        yield start


@pytest_asyncio.fixture
async def prometheus_factory() -> AsyncIterator[Callable[..., Awaitable[PrometheusServer]]]:
    """`await prometheus_factory(rules_yaml=..., targets=[...], alertmanager_url=...)`: a
    running PrometheusServer (same keywords), stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(**options: Any) -> PrometheusServer:
            server = PrometheusServer(**options)
            await _enter(stack, server)
            return server

        yield start
