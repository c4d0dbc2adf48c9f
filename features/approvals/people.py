"""Who someone is for the approval rules, asked at the moment it matters.

Teams come from the catalog (listed members, or the team's Slack user group), user
groups from Slack through the `Directory` (cached at most 60 s), so someone removed
from a group loses the right to approve within a minute.
"""

from __future__ import annotations

from collections.abc import Iterable

from catalog import Catalog, membership_of
from features.approvals.policy import Person
from kernel.ids import SlackUserId
from kernel.ports.platform import Directory


async def person_of(
    catalog: Catalog, directory: Directory, user: SlackUserId, *, usergroups: Iterable[str]
) -> Person:
    """`user`'s teams, admin flag, and which of `usergroups` they are in."""
    email = user if "@" in user else await directory.email_of(user)
    me = await membership_of(catalog, directory, user, email=email)
    groups = frozenset([g for g in usergroups if user in await directory.usergroup_members(g)])
    return Person(user=user, teams=me.teams, usergroups=groups, platform_admin=me.platform_admin)
