"""Who someone is for the approval rules, asked at the moment it matters.

Teams come from the catalog (listed members, or the team's Slack user group), user
groups from the `Directory`, which keeps them in the database, current through Slack's
`subteam_*` events and a periodic refresh: a click asks Slack nothing for them.
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
    if "@" in user:
        email: str | None = user
    else:  # no Slack call unless the catalog lists someone by e-mail
        email = await directory.email_of(user) if catalog.lists_emails() else None
    me = await membership_of(catalog, directory, user, email=email)
    groups = frozenset([g for g in usergroups if user in await directory.usergroup_members(g)])
    return Person(user=user, teams=me.teams, usergroups=groups, platform_admin=me.platform_admin)
