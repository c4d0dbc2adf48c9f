"""Finding the features: commands, buttons, forms and executors, one module at a time.

A feature is a module in commands/, approvals/ or alerts/. It may define Command,
Button and Form subclasses, and a function `executors(ports) -> list[Executor]` for the
Actions it plans. Nothing has to be registered by hand: adding the module is enough.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TypeVar

import alerts
import approvals
import commands
from bot.domain import Executor
from bot.ports import Button, Form, Ports
from commands.base import CommandRegistry

FEATURE_PACKAGES: tuple[ModuleType, ...] = (commands, approvals, alerts)

T = TypeVar("T")
ExecutorFactory = Callable[[Ports], Iterable[Executor]]


@dataclass
class Features:
    """Everything the feature packages define, by the name Slack will use."""

    commands: CommandRegistry
    buttons: dict[str, Button] = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)
    executor_factories: list[ExecutorFactory] = field(default_factory=list)

    def button_for(self, action_id: str) -> Button | None:
        """The handler of `action_id`, or of its prefix before ':' (e.g. `run.retry:…`)."""
        return self.buttons.get(action_id) or self.buttons.get(action_id.split(":", 1)[0])

    def executors(self, ports: Ports) -> list[Executor]:
        return [executor for factory in self.executor_factories for executor in factory(ports)]


def discover(packages: Iterable[ModuleType] = FEATURE_PACKAGES) -> Features:
    """Import every feature module and collect what it defines."""
    features = Features(commands=commands.registry())
    for package in packages:
        for module in _modules(package):
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if cls.__module__ != module.__name__ or inspect.isabstract(cls):
                    continue
                if issubclass(cls, Button):
                    _add(features.buttons, cls.action_id, cls(), module)
                elif issubclass(cls, Form):
                    _add(features.forms, cls.callback_id, cls(), module)
            factory = getattr(module, "executors", None)
            if callable(factory):
                features.executor_factories.append(factory)
    return features


def _modules(package: ModuleType) -> list[ModuleType]:
    return [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_") and info.name != "base"
    ]


def _add(table: dict[str, T], name: str, handler: T, module: ModuleType) -> None:
    if name in table:
        raise RuntimeError(f"{module.__name__}: '{name}' is already handled elsewhere")
    table[name] = handler
