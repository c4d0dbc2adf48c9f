"""Policy as code: which approvals an Action needs, and who may give them.

Rules live in platform.yml (`approval_policies`). A rule matches on the Action's kind,
environment, service and the service's owner team; every field it names must match.
When several match, the strictest wins: the most approvals, then the shortest expiry;
a reason is required if any matching rule requires one, and the requester's own team
may approve only if every matching rule allows it. No rule means no approval, except
in an environment marked `risk: high`, where one platform admin must approve.

Everything here is pure: facts about people (teams, user groups) come in as arguments,
so the gate that asks Slack and the `policy explain` command share one decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from catalog.model import ApprovalPolicy, PlatformModel
from kernel.actions import Action

HIGH_RISK_DEFAULT = "risk: high default"
"""The rule name when no policy matches but the environment is `risk: high`."""
HIGH_RISK_EXPIRES_MINUTES = 30


@dataclass(frozen=True)
class Target:
    """What a rule matches on: the Action's kind, environment, service, owner team."""

    action: str
    environment: str | None
    service: str | None
    team: str | None

    @classmethod
    def of(cls, model: PlatformModel, action: Action) -> Target:
        service = action.affected_service()
        owner = model.services[service].owner if service in model.services else None
        return cls(action.kind, action.affected_environment(), service, owner)


@dataclass(frozen=True)
class Requirement:
    """The approvals one Action needs; stored with the request, so it cannot drift."""

    rule: str
    approvals: int
    usergroups: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    platform_admins: bool = False
    """Platform admins (platform.admins, platform.admins_usergroup) may approve."""
    allow_own_team: bool = True
    """False: nobody in the owner team (`owner_team`) may approve."""
    owner_team: str | None = None
    expires_minutes: int = 30
    require_reason: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Requirement:
        return cls(
            rule=str(data["rule"]),
            approvals=int(data["approvals"]),
            usergroups=tuple(data.get("usergroups", ())),
            teams=tuple(data.get("teams", ())),
            platform_admins=bool(data.get("platform_admins", False)),
            allow_own_team=bool(data.get("allow_own_team", True)),
            owner_team=data.get("owner_team"),
            expires_minutes=int(data.get("expires_minutes", 30)),
            require_reason=bool(data.get("require_reason", False)),
        )

    def approvers_text(self) -> str:
        """`members of <!subteam^S02SRE>, team `sre`` for cards and refusals (mrkdwn)."""
        who = [f"<!subteam^{g}>" for g in self.usergroups]
        who += [f"team `{t}`" for t in self.teams]
        if self.platform_admins:
            who.append("platform admins")
        text = " or ".join(who) if who else "nobody (fix the policy)"
        if not self.allow_own_team and self.owner_team:
            text += f", not from team `{self.owner_team}`"
        return text


def matches(policy: ApprovalPolicy, target: Target) -> bool:
    """True when every field the policy's `match` names equals the target's."""
    match = policy.match
    return all(
        wanted is None or wanted == actual
        for wanted, actual in (
            (match.action, target.action),
            (match.environment, target.environment),
            (match.service, target.service),
            (match.team, target.team),
        )
    )


def matching_policies(model: PlatformModel, target: Target) -> list[ApprovalPolicy]:
    return [p for p in model.approval_policies if matches(p, target)]


def requirement_for(model: PlatformModel, action: Action) -> Requirement | None:
    """What `action` needs before it runs; None when it may run at once."""
    return requirement_of(model, Target.of(model, action))


def requirement_of(model: PlatformModel, target: Target) -> Requirement | None:
    """What a change to `target` needs; None when it may run at once."""
    rules = matching_policies(model, target)
    if rules:
        strictest = max(rules, key=lambda p: (p.approvals, -p.expires_minutes))
        if strictest.approvals == 0:
            return None
        return Requirement(
            rule=strictest.name,
            approvals=strictest.approvals,
            usergroups=strictest.approvers.usergroups,
            teams=strictest.approvers.teams,
            allow_own_team=all(p.allow_own_team for p in rules),
            owner_team=target.team,
            expires_minutes=strictest.expires_minutes,
            require_reason=any(p.require_reason for p in rules),
        )
    environment = model.environments.get(target.environment or "")
    if environment is not None and environment.risk == "high":
        return Requirement(
            rule=HIGH_RISK_DEFAULT,
            approvals=1,
            platform_admins=True,
            owner_team=target.team,
            expires_minutes=HIGH_RISK_EXPIRES_MINUTES,
        )
    return None


@dataclass(frozen=True)
class Person:
    """What the platform knows of someone at click time."""

    user: str
    teams: tuple[str, ...]
    usergroups: frozenset[str]
    """The rule's user groups this person is in (only those are looked up)."""
    platform_admin: bool


def eligible(requirement: Requirement, person: Person) -> bool:
    """May `person` vote under `requirement`? (Not the requester check: that is the gate's.)"""
    if not requirement.allow_own_team and requirement.owner_team in person.teams:
        return False
    return (
        bool(set(requirement.usergroups) & person.usergroups)
        or bool(set(requirement.teams) & set(person.teams))
        or (requirement.platform_admins and person.platform_admin)
    )


def not_eligible_message(requirement: Requirement, person: Person) -> str:
    """Why `person` may not vote, for the clicker (mrkdwn)."""
    if not requirement.allow_own_team and requirement.owner_team in person.teams:
        return (
            f"Rule `{requirement.rule}` needs an approver from outside team "
            f"`{requirement.owner_team}`, and you are in it. Ask {requirement.approvers_text()}."
        )
    return (
        f"Only {requirement.approvers_text()} may vote on this request (rule "
        f"`{requirement.rule}`), and you are not one of them. Nothing was recorded."
    )


def explain(model: PlatformModel, target: Target, person: Person | None = None) -> str:
    """Plain text: which rules match `target`, which one wins, and whether `person` may
    approve (for `platform-bot policy explain`)."""
    lines = [
        f"action {target.action} on service {target.service or '-'} "
        f"(team {target.team or '-'}) in environment {target.environment or '-'}"
    ]
    rules = matching_policies(model, target)
    for policy in rules:
        lines.append(f"  matches rule {policy.name!r}: {policy.approvals} approval(s)")
    requirement = requirement_of(model, target)
    if requirement is None:
        lines.append("no approval needed: it runs at once")
    else:
        if not rules:
            lines.append(f"no rule matches, but environment {target.environment} is risk: high")
        lines.append(
            f"needs {requirement.approvals} approval(s) under {requirement.rule!r} from "
            f"{_plain(requirement)}, within {requirement.expires_minutes} min"
            + ("; a reason is required" if requirement.require_reason else "")
        )
    if person is not None and requirement is not None:
        verdict = "may" if eligible(requirement, person) else "may not"
        lines.append(
            f"{person.user} {verdict} approve it (and never their own request); "
            f"teams: {', '.join(person.teams) or 'none'}"
            + ("; platform admin, may break glass with a reason" if person.platform_admin else "")
        )
    return "\n".join(lines)


def rule_summary(model: PlatformModel) -> list[str]:
    """For check-config: the rule a change to each service in each environment gets."""
    lines = []
    for name, service in sorted(model.services.items()):
        for env in service.environments:
            requirement = requirement_of(model, Target("any", env, name, service.owner))
            rule = (
                f"{requirement.rule} ({requirement.approvals} approval(s) from "
                f"{_plain(requirement)})"
                if requirement
                else "no approval"
            )
            lines.append(f"{name} in {env}: {rule}")
    return lines


def unknown_usergroups(model: PlatformModel, known: set[str]) -> list[str]:
    """Problems for user groups the policies name that Slack does not know."""
    problems = []
    for i, policy in enumerate(model.approval_policies):
        for j, group in enumerate(policy.approvers.usergroups):
            if group not in known:
                problems.append(
                    f"approval_policies[{i}].approvers.usergroups[{j}]: Slack has no user group "
                    f"{group} (rule {policy.name!r}), so nobody can approve through it; "
                    "write the id usergroups.list shows (S...)"
                )
    return problems


def _plain(requirement: Requirement) -> str:
    who = [f"user group {g}" for g in requirement.usergroups]
    who += [f"team {t}" for t in requirement.teams]
    if requirement.platform_admins:
        who.append("platform admins")
    text = " or ".join(who) or "nobody"
    if not requirement.allow_own_team and requirement.owner_team:
        text += f" (not team {requirement.owner_team})"
    return text
