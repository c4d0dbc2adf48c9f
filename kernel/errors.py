"""One hierarchy of errors, each with a message fit for a person, and one way to turn an
external system's failure into one of them.

    PlatformError
    ├── UsageError        bad input; shown to the person, with the usage line
    ├── ChangeRefused     a change that may not even be asked for (locked, no right)
    ├── StepFailed        a Run step failed; shown on the Run's progress message
    ├── TryAgainLater     a dependency of ours (the database) is down
    └── AdapterError      an external system refused or failed
        └── NotConfigured that system is not configured on this bot (an operator problem)

Messages are mrkdwn for Slack: already escaped where they carry user text, never a
stack trace, never a secret.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class PlatformError(Exception):
    """The root of every error we show to people."""


class UsageError(PlatformError):
    """Bad command input; the message is shown to the user as is (already escaped mrkdwn)."""

    def __init__(self, message: str, *, usage: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


class StepFailed(PlatformError):
    """Raised by a step to fail with a message meant for people (no stack trace shown)."""


class TryAgainLater(PlatformError):
    """A dependency (usually the database) is down; the user is asked to try again."""


class ChangeRefused(PlatformError):
    """A change that may not even be asked for (locked, reason missing, no right to break
    glass); the message is for the requester, already escaped mrkdwn."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AdapterError(PlatformError):
    """An external system refused or failed; `system` names it, the message says what."""

    def __init__(self, system: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system
        self.message = message
        self.status = status


class NotConfigured(AdapterError):
    """The bot has no connection to `system` at all: not the user's fault, nor the
    system's, but the operator's. Said once, the same way everywhere, with who to ask."""

    def __init__(self, system: str, variables: str) -> None:
        super().__init__(system, f"not configured on this bot (set {variables})")
        self.variables = variables

    def __str__(self) -> str:
        return (
            f"{self.system} is not configured on this bot (it needs {self.variables}); "
            "ask the platform team"
        )


async def adapter_call(call: Awaitable[T], *, reading: str | None = None) -> T:
    """Await a call to an external system; turn its failure into an error for people.

    In a Run step (`reading` None) an AdapterError fails the step with its message. While
    answering a command (`reading="the Deployments of checkout in prod"`) it becomes a
    UsageError: "I could not read the Deployments of …: <why>". A system that is not
    configured is said as such either way.
    """
    try:
        return await call
    except AdapterError as exc:
        if reading is None:
            if isinstance(exc, NotConfigured):
                raise  # the Run engine says it as the operator's problem
            raise StepFailed(str(exc)) from None
        if isinstance(exc, NotConfigured):
            raise UsageError(f"{_escape(str(exc))}.") from None
        raise UsageError(f"I could not read {reading}: {_escape(str(exc))}") from None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
