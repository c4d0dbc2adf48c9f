"""The Actions of temporary access: grant, extend and revoke a RoleBinding.

A grant binds one person's cluster identity (from `access.identities` in platform.yml)
to a ClusterRole in one service's namespace for a while; its end is a durable timer.
The fingerprint holds the role, the identity and the duration, so an approval covers
exactly that and nothing longer or wider.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from kernel.actions import Action
from kernel.errors import UsageError
from kernel.mrkdwn import code, escape

Role = Literal["view", "edit", "debug"]
ROLES: tuple[Role, ...] = ("view", "edit", "debug")
DURATION = re.compile(r"^(?:(\d{1,3})d)?(?:(\d{1,4})h)?(?:(\d{1,5})m)?$")


def parse_duration(text: str, *, max_hours: int) -> int:
    """`2h`, `90m`, `1h30m`, `1d` -> minutes; UsageError outside 1 minute .. max_hours."""
    match = DURATION.fullmatch(text.strip().lower())
    if not text or match is None or not any(match.groups()):
        raise UsageError(f"{code(text[:20])} is not a duration; write e.g. `30m`, `2h` or `1h30m`.")
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    total = days * 24 * 60 + hours * 60 + minutes
    if total < 1 or total > max_hours * 60:
        raise UsageError(f"Access lasts from 1 minute to {max_hours} hours; ask for less.")
    return total


def duration_text(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if hours and rest:
        return f"{hours}h{rest}m"
    return f"{hours}h" if hours else f"{rest}m"


class AccessChange(Action):
    """What each access Action names: whose access, to which service, in which env."""

    service: str
    env: str
    team: str
    user: str
    """The Slack user the access is for."""
    role: Role

    @property
    def where(self) -> str:
        return f"`{escape(self.service)}` in `{escape(self.env)}`"


class GrantAccess(AccessChange):
    """Bind someone to a ClusterRole in a service's namespace, for a while."""

    kind: ClassVar[str] = "access.grant"

    cluster_role: str
    subject_kind: Literal["User", "Group"]
    subject_name: str
    namespace: str
    minutes: int
    reason: str

    def summary(self) -> str:
        return (
            f"grant {self.role} access to {self.service} in {self.env} "
            f"for {duration_text(self.minutes)} to {self.user}"
        )

    def lock_key(self) -> str:
        return f"access:{self.service}/{self.env}/{self.user}"

    def change_lines(self) -> list[str]:
        return [
            f"<@{self.user}> gets *{self.role}* on {self.where} for "
            f"{duration_text(self.minutes)} (then it ends by itself)",
            f"RoleBinding in {code(self.namespace)}: {self.subject_kind} "
            f"{code(self.subject_name)} -> ClusterRole {code(self.cluster_role)}",
        ]


class ExtendAccess(AccessChange):
    """Push a live grant's end further out."""

    kind: ClassVar[str] = "access.extend"

    grant_id: str
    from_generation: int
    """The grant as it was when asked; an extension of a changed grant is refused."""
    minutes: int

    def summary(self) -> str:
        return (
            f"extend {self.user}'s {self.role} access to {self.service} in {self.env} "
            f"by {duration_text(self.minutes)}"
        )

    def change_lines(self) -> list[str]:
        return [
            f"<@{self.user}>'s *{self.role}* on {self.where} lasts "
            f"{duration_text(self.minutes)} longer (grant {code(self.grant_id[:8])})"
        ]


class RevokeAccess(AccessChange):
    """End a grant: delete its RoleBinding. Never waits for approval (it only takes away)."""

    kind: ClassVar[str] = "access.revoke"

    grant_id: str
    why: Literal["expired", "revoked"]
    by: str
    attempt: int = 0
    """How many times the cluster refused before (each retry is a Run of its own)."""

    def summary(self) -> str:
        verb = "end expired" if self.why == "expired" else "revoke"
        return f"{verb} {self.role} access of {self.user} to {self.service} in {self.env}"


# `--db readonly` (issue 13) slots in next to GrantAccess: a `DatabaseAccess` Action whose
# executor asks OpenBao's database engine for short-lived read-only credentials and hands
# them over through a single-use link like features.secrets' page, never in Slack.
