"""Slack user-group membership, kept in the database so role checks never wait on Slack.

`usergroups.users.list` and `usergroups.list` are Tier 2 (about 20 calls a minute) and a
real call takes 100-500 ms; a click that asked Slack once per team would blow both the
budget and Slack's 3-second windows. So membership lives here: filled by one
`usergroups.list(include_users=true)` call per refresh (engine.directory), kept current
by the `subteam_members_changed` / `subteam_updated` events, and shared by replicas.

`slack_directory_state` says when the groups were last read from Slack, and why they
could not be (``plan_upgrade_required``: a free workspace has no user groups, so the
catalog's listed members are all there is).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Index, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine.db import Base, UTCDateTime, utcnow

USERGROUPS = "usergroups"
"""The one state row's name."""


class SlackUsergroupMemberRow(Base):
    """One person in one Slack user group."""

    __tablename__ = "slack_usergroup_members"

    usergroup_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)

    __table_args__ = (Index("ix_slack_usergroup_members_user_id", "user_id"),)


class SlackDirectoryStateRow(Base):
    """When the user groups were last read from Slack in full, and what stopped it."""

    __tablename__ = "slack_directory_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    unavailable: Mapped[str | None] = mapped_column(String(80), nullable=True)
    """A Slack error that means there are no groups to read (``plan_upgrade_required``)."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)


@dataclass(frozen=True)
class Snapshot:
    """Every group's members as the database has them, and the state they came with."""

    members: Mapping[str, frozenset[str]]
    refreshed_at: datetime | None
    unavailable: str | None

    @property
    def synced(self) -> bool:
        return self.refreshed_at is not None or self.unavailable is not None


def read_snapshot(session: Session) -> Snapshot:
    """One read of the whole table (a few thousand rows at most)."""
    state = session.get(SlackDirectoryStateRow, USERGROUPS)
    members: dict[str, set[str]] = {}
    for group, user in session.execute(
        select(SlackUsergroupMemberRow.usergroup_id, SlackUsergroupMemberRow.user_id)
    ):
        members.setdefault(group, set()).add(user)
    return Snapshot(
        members={group: frozenset(users) for group, users in members.items()},
        refreshed_at=state.refreshed_at if state else None,
        unavailable=state.unavailable if state else None,
    )


def replace_all(session: Session, groups: Mapping[str, Iterable[str]]) -> None:
    """Every group's members as Slack listed them just now (groups not listed are gone)."""
    session.execute(delete(SlackUsergroupMemberRow))
    session.add_all(
        SlackUsergroupMemberRow(usergroup_id=group, user_id=user)
        for group, users in groups.items()
        for user in sorted(set(users))
    )
    _set_state(session, refreshed=True, unavailable=None)


def mark_unavailable(session: Session, error: str) -> None:
    """Slack said the workspace has no groups (e.g. a free plan): none are kept."""
    session.execute(delete(SlackUsergroupMemberRow))
    _set_state(session, refreshed=False, unavailable=error)


def replace_group(session: Session, group: str, users: Iterable[str]) -> None:
    """One group's members, from a `subteam_updated` event (empty: disabled or emptied)."""
    session.execute(
        delete(SlackUsergroupMemberRow).where(SlackUsergroupMemberRow.usergroup_id == group)
    )
    session.add_all(
        SlackUsergroupMemberRow(usergroup_id=group, user_id=user) for user in sorted(set(users))
    )


def change_members(
    session: Session, group: str, *, added: Iterable[str], removed: Iterable[str]
) -> None:
    """A `subteam_members_changed` event: some joined, some left."""
    gone = set(removed)
    if gone:
        session.execute(
            delete(SlackUsergroupMemberRow).where(
                SlackUsergroupMemberRow.usergroup_id == group,
                SlackUsergroupMemberRow.user_id.in_(gone),
            )
        )
    present = set(
        session.scalars(
            select(SlackUsergroupMemberRow.user_id).where(
                SlackUsergroupMemberRow.usergroup_id == group
            )
        )
    )
    session.add_all(
        SlackUsergroupMemberRow(usergroup_id=group, user_id=user)
        for user in sorted(set(added) - gone - present)
    )


def _set_state(session: Session, *, refreshed: bool, unavailable: str | None) -> None:
    now = utcnow()
    state = session.get(SlackDirectoryStateRow, USERGROUPS)
    if state is None:
        state = SlackDirectoryStateRow(name=USERGROUPS, updated_at=now)
        session.add(state)
    state.refreshed_at = now if refreshed else None
    state.unavailable = unavailable
    state.updated_at = now
