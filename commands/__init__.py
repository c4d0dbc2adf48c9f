"""The `/platform` subcommands: one module each, found automatically.

To add a command, add a module here defining one `Command` subclass (see
`commands.base` and the README's "Adding a command").
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil

from commands.base import Command, CommandRegistry


def discover() -> CommandRegistry:
    """Import every module of this package and register the Command classes it defines."""
    found: list[Command] = []
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, Command)
                and cls is not Command
                and cls.__module__ == module.__name__
            ):
                found.append(cls())
    return CommandRegistry(found)


@functools.cache
def registry() -> CommandRegistry:
    """The commands of this package, discovered once."""
    return discover()
