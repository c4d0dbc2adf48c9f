"""One module per external system, each with a small Protocol and one real implementation.

`Adapters` is the bundle handed to commands and executors; a field is None when that
system is not configured, and the feature that needs it says so to the user.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Adapters:
    """The external systems this bot is configured to talk to."""
