"""Approvals: policy as code, the gate every change passes, the desk that takes votes.

policy       which rule applies to an Action (strictest wins; risk: high default)
people       who someone is, for a rule (teams, user groups, admins)
gate         ChangeGate, the `Changes` port: run now, wait for approval, break glass
desk         votes, checked at click time; the expiry sweep
store        requests and votes in the database, every decision a conditional UPDATE
request      an approval request as the card and the command see it
card         the card, updated in place
buttons      Approve; Reject and its reason form
command      `/platform approvals`
tables       this feature's tables
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog import Catalog
from engine.runs import RunEngine
from features.approvals.buttons import ApproveButton, RejectButton, RejectForm
from features.approvals.command import Approvals as ApprovalsCommand
from features.approvals.desk import Desk
from features.approvals.gate import ChangeGate
from features.approvals.store import ApprovalStore
from features.kit.registry import FeatureRegistry
from kernel.ports.platform import Directory


@dataclass(frozen=True)
class Approvals:
    """The approvals of one bot: the gate (`Changes`) and the desk (votes)."""

    gate: ChangeGate
    desk: Desk


def build(engine: RunEngine, *, catalog: Catalog, directory: Directory) -> Approvals:
    store = ApprovalStore(engine)
    return Approvals(
        gate=ChangeGate(engine, store, catalog=catalog, directory=directory),
        desk=Desk(engine, store, catalog=catalog, directory=directory),
    )


def register(registry: FeatureRegistry, approvals: Approvals) -> None:
    """Add the card's buttons, the reject form, `/platform approvals` and the sweep."""
    desk = approvals.desk
    registry.add(ApproveButton(desk), RejectButton(desk), RejectForm(desk), ApprovalsCommand(desk))
    registry.loop("approval-sweep", desk.sweep)


__all__ = ["Approvals", "ChangeGate", "Desk", "build", "register"]
