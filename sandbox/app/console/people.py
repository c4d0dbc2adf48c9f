"""Who is who in the sandbox workspace, and where each person starts."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from catalog.model import PlatformModel
from sandbox.standins.slack_api import SlackChannel, SlackUser, Workspace


def describe_people(model: PlatformModel, workspace: Workspace) -> list[str]:
    """One line a person: name, teams and roles, as platform.yml and the user groups say."""
    lines = []
    width = max((len(u.name) for u in workspace.users), default=0)
    real_width = max((len(u.real_name) for u in workspace.users), default=0)
    for user in workspace.users:
        if user.is_bot:
            continue
        teams = _teams_of(user, model, workspace)
        roles = []
        platform = model.platform
        if _listed_or_in_group(user, platform.admins, platform.admins_usergroup, workspace):
            roles.append("platform admin")
        approves = [
            p.name
            for p in model.approval_policies
            if set(p.approvers.teams) & set(teams)
            or any(_in_group(user, g, workspace) for g in p.approvers.usergroups)
        ]
        if approves:
            roles.append("approver (" + ", ".join(approves) + ")")
        where = ("team " + ", ".join(teams)) if teams else ("" if roles else "in no team")
        about = "; ".join(x for x in (where, *roles) if x)
        lines.append(f"{user.name:<{width}}  {user.real_name:<{real_width}}  {about}")
    return lines


def _teams_of(user: SlackUser, model: PlatformModel, workspace: Workspace) -> list[str]:
    return [
        name
        for name, team in sorted(model.teams.items())
        if _listed_or_in_group(user, team.members, team.slack_usergroup, workspace)
    ]


def _in_group(user: SlackUser, group_id: str, workspace: Workspace) -> bool:
    return any(g.id == group_id and user.id in g.users for g in workspace.usergroups)


def _listed_or_in_group(
    user: SlackUser, members: Sequence[str], group: str | None, workspace: Workspace
) -> bool:
    listed = {m.lower() for m in members}
    if user.id.lower() in listed or (user.email and user.email.lower() in listed):
        return True
    return group is not None and _in_group(user, group, workspace)


def describe_channels(model: PlatformModel, workspace: Workspace) -> list[str]:
    """One line a channel: whose it is, as platform.yml says."""
    lines = []
    width = max((len(c.name) + 1 for c in workspace.channels), default=0)
    for channel in workspace.channels:
        spellings = {channel.id, "#" + channel.name}
        uses = [f"team {n}" for n, t in sorted(model.teams.items()) if t.slack_channel in spellings]
        if model.platform.audit_channel in spellings:
            uses.append("audit log")
        if model.platform.fallback_channel in spellings:
            uses.append("alerts nobody owns")
        lines.append(f"{'#' + channel.name:<{width}}  {'; '.join(uses)}".rstrip())
    return lines


def home_channel(user: SlackUser, model: PlatformModel, workspace: Workspace) -> SlackChannel:
    """Where someone starts: their team's channel, else the platform's fallback channel."""
    candidates = [model.teams[t].slack_channel for t in _teams_of(user, model, workspace)]
    candidates.append(model.platform.fallback_channel or "")
    for ref in candidates:
        with contextlib.suppress(KeyError):
            return workspace.channel(ref)
    return workspace.channels[0]
