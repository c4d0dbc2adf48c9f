"""Actions and the steps that carry them out.

An Action says exactly what will change; an Executor turns it into checkpointed
Steps that the Run engine executes one at a time, exactly once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from kernel.ids import (
    EnvironmentName,
    RunId,
    ServiceName,
    SlackUserId,
)


class Action(BaseModel):
    """One exact change to the platform, e.g. `Rollback(service="checkout", env="prod")`.

    An approval is bound to the fingerprint: change any field and it needs a new one.
    Subclasses set `kind` (a stable name stored in the database) and `summary()`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str] = "action"

    def fingerprint(self) -> str:
        """A hash of exactly what will change: the kind and every field, canonically."""
        canonical = json.dumps(
            {"kind": self.kind, "fields": self.model_dump(mode="json")},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def summary(self) -> str:
        """One line for people: what this Action does."""
        fields = ", ".join(f"{k}={v}" for k, v in self.model_dump(mode="json").items())
        return f"{self.kind}({fields})"

    def affected_service(self) -> ServiceName | None:
        """The service this Action changes, if any (its `service` field, by convention)."""
        value = getattr(self, "service", None)
        return ServiceName(value) if isinstance(value, str) else None

    def affected_environment(self) -> EnvironmentName | None:
        """The environment this Action changes, if any (its `env` field, by convention)."""
        value = getattr(self, "env", None)
        return EnvironmentName(value) if isinstance(value, str) else None

    def lock_key(self) -> str | None:
        """Runs with the same lock key never overlap (e.g. `checkout/prod` for deploys and
        rollbacks); a second one is refused while the first waits or runs. None: no lock."""
        return None

    def change_lines(self) -> list[str]:
        """What exactly will change, one mrkdwn line each, for approval cards and progress
        (e.g. `image: registry/checkout:1.4.2 -> 1.4.1 (revision 7 -> 8)`)."""
        return [self.summary()]


@dataclass(frozen=True)
class SubmittedRun:
    """What `RunSubmitter.submit` answers: the Run and whether it already existed."""

    run_id: RunId
    created: bool


async def _no_report(detail: str) -> None:
    return None


@dataclass
class StepContext:
    """What a step sees: its Run, the Action, and what earlier steps returned.

    `report(detail)` shows a line of live detail under the running step in the progress
    message (e.g. `3/4 replicas updated, 2 ready`); updates are coalesced by the outbox.
    """

    run_id: RunId
    action: Action
    requested_by: SlackUserId
    outputs: dict[str, dict[str, Any]]
    attempt: int
    report: Callable[[str], Awaitable[None]] = _no_report


StepFunction = Callable[[StepContext], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Step:
    """One checkpointed unit of a Run. It must be idempotent: check, then change.

    A crash after the change but before the checkpoint runs it again. A step may return
    `{"outcome": "..."}` among its output: one line the progress message shows next to it
    once it is done.
    """

    name: str
    title: str
    run: StepFunction
    keep_going: bool = False
    """When this step fails, the Run still attempts the steps after it (each says how it
    ended) and fails at the end; Retry then runs only the steps that failed."""


class Executor(Protocol):
    """Turns an Action into the steps that carry it out (with adapters bound in).

    Optional extras an executor may define (the Run engine looks for them):
    - `async def stale_reason(self, action) -> str | None`: why the Action no longer
      matches the live system (prod moved since it was planned), in words that follow
      "prod moved since this was asked: "; checked on every approval click. It raises
      AdapterError when the live system cannot be read, and the click then records
      nothing: an approval is never given to what could not be checked.
    - `def failure_buttons(self, action) -> list[tuple[str, str]]`: extra
      (action_id, label) buttons on a failed Run's progress message, valued the Run id.
    """

    @property
    def action_type(self) -> type[Action]:
        """The Action class this executor carries out (its `kind` names the Runs)."""
        ...

    def steps(self, action: Action) -> Sequence[Step]: ...
