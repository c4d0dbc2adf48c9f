"""The registry every feature adds itself to: commands, buttons, forms, executors, HTTP
routes, background loops and timer handlers, each under the name Slack (or the HTTP
server, or the timer table) will use.

Registration is explicit: each feature package's `register()` adds its handlers here,
and `app.bootstrap` calls those functions in one visible list. Nothing is discovered by
walking modules, so what the bot can do is read in one place, and a name claimed twice
fails at start-up rather than silently shadowing another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

from engine.timers import Timer
from features.kit.commands import Command, CommandRegistry
from features.kit.context import Button, Form, Options, Ports
from kernel.actions import Executor

ExecutorFactory = Callable[[Ports], Iterable[Executor]]
"""Builds a feature's executors once the ports (which need the Run engine) exist."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Loop = Callable[[asyncio.Event], Awaitable[None]]
"""A background loop: runs until the event is set, then returns promptly."""
TimerHandler = Callable[[Timer], Awaitable[None]]
"""What happens when a durable timer of a kind is due (engine.timers): something
idempotent on the timer, e.g. submitting a Run keyed `timer.idempotency_key`."""


@dataclass(frozen=True)
class Route:
    """An HTTP endpoint a feature serves (a webhook), e.g. POST /alerts/alertmanager."""

    method: str
    path: str
    handler: Handler


@dataclass(frozen=True)
class BackgroundLoop:
    """A loop a feature needs running while the bot serves (e.g. the alert worker)."""

    name: str
    loop: Loop


@dataclass
class FeatureRegistry:
    """Everything the features registered, by the name Slack (or HTTP) will use."""

    commands: CommandRegistry = field(default_factory=CommandRegistry)
    buttons: dict[str, Button] = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)
    options: dict[str, Options] = field(default_factory=dict)
    executor_factories: list[ExecutorFactory] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    loops: list[BackgroundLoop] = field(default_factory=list)
    timers: dict[str, TimerHandler] = field(default_factory=dict)

    def add(self, *handlers: Command | Button | Form | Options) -> None:
        """Register commands (by name), buttons (by action id), forms (by callback id) and
        the options of external selects (by action id)."""
        for handler in handlers:
            if isinstance(handler, Command):
                self.commands.add(handler)
            elif isinstance(handler, Button):
                _claim(self.buttons, handler.action_id, handler, "button action id")
            elif isinstance(handler, Options):
                _claim(self.options, handler.action_id, handler, "options action id")
            else:
                _claim(self.forms, handler.callback_id, handler, "form callback id")

    def executors(self, factory: ExecutorFactory) -> None:
        """Register the executors of a feature's Actions (built once the ports exist)."""
        self.executor_factories.append(factory)

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Serve `method path` (a webhook) on the bot's HTTP server."""
        if any(r.method == method and r.path == path for r in self.routes):
            raise RuntimeError(f"{method} {path} is already served by another feature")
        self.routes.append(Route(method, path, handler))

    def loop(self, name: str, loop: Loop) -> None:
        """Run `loop(stop)` in the background while the bot serves (engine.tasks)."""
        self.loops.append(BackgroundLoop(name, loop))

    def timer(self, kind: str, handler: TimerHandler) -> None:
        """Call `handler(timer)` when a timer of `kind` is due: once, across restarts and
        replicas (engine.timers). Features schedule them with `engine.timers.schedule`."""
        if kind in self.timers:
            raise RuntimeError(f"timer kind '{kind}' is registered twice")
        self.timers[kind] = handler

    def button_for(self, action_id: str) -> Button | None:
        """The handler of `action_id`, or of its prefix before ':' (e.g. `run.retry:…`)."""
        return self.buttons.get(action_id) or self.buttons.get(action_id.split(":", 1)[0])

    def build_executors(self, ports: Ports) -> list[Executor]:
        return [executor for factory in self.executor_factories for executor in factory(ports)]


def _claim(
    table: dict[str, Button] | dict[str, Form] | dict[str, Options],
    name: str,
    handler: object,
    what: str,
) -> None:
    if name in table:
        raise RuntimeError(f"{what} '{name}' is registered twice ({type(handler).__name__})")
    table[name] = handler  # type: ignore[assignment]
