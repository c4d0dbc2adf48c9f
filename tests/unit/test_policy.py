"""Approval policy: which rule applies, who may vote, and what the card says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import pytest

from app.cli import main
from catalog.load import check_platform_text, load_platform_model
from catalog.model import PlatformModel
from features.approvals.card import APPROVE, REJECT, render_card
from features.approvals.policy import (
    HIGH_RISK_DEFAULT,
    Person,
    Requirement,
    Target,
    eligible,
    explain,
    not_eligible_message,
    requirement_for,
    rule_summary,
    unknown_usergroups,
)
from features.approvals.request import ApprovalRequest, Vote
from kernel.actions import Action
from tests.unit.fakes import SAMPLE_CONFIG


class Rollback(Action):
    kind: ClassVar[str] = "rollback"
    service: str
    env: str


class Deploy(Action):
    kind: ClassVar[str] = "deploy"
    service: str
    env: str


def sample() -> PlatformModel:
    return load_platform_model(SAMPLE_CONFIG)


def with_policies(*policies: dict[str, object]) -> PlatformModel:
    data = sample().model_dump(mode="json")
    data["approval_policies"] = list(policies)
    return PlatformModel.model_validate(data)


def person(user: str, *teams: str, groups: tuple[str, ...] = (), admin: bool = False) -> Person:
    return Person(user=user, teams=teams, usergroups=frozenset(groups), platform_admin=admin)


def test_prod_rollback_needs_one_sre_approval_under_prod_changes() -> None:
    requirement = requirement_for(sample(), Rollback(service="checkout", env="prod"))
    assert requirement == Requirement(
        rule="prod-changes",
        approvals=1,
        usergroups=("S02SRE",),
        teams=("sre",),
        owner_team="payments",
        expires_minutes=30,
    )


def test_low_risk_environment_without_a_rule_needs_nothing() -> None:
    assert requirement_for(sample(), Rollback(service="checkout", env="staging")) is None


def test_high_risk_environment_without_a_rule_needs_one_platform_admin() -> None:
    requirement = requirement_for(sample(), Rollback(service="checkout", env="prod-eu"))
    assert requirement is not None
    assert (requirement.rule, requirement.approvals) == (HIGH_RISK_DEFAULT, 1)
    assert requirement.platform_admins and requirement.expires_minutes == 30
    assert eligible(requirement, person("U04DAVE", admin=True))
    assert not eligible(requirement, person("U02BOB", "sre", groups=("S02SRE",)))


def test_strictest_matching_rule_wins_and_reason_is_required_if_any_rule_says_so() -> None:
    model = with_policies(
        {
            "name": "prod",
            "match": {"environment": "prod"},
            "approvals": 1,
            "approvers": {"teams": ["sre"]},
            "expires_minutes": 60,
            "require_reason": True,
        },
        {
            "name": "payments-prod",
            "match": {"environment": "prod", "team": "payments"},
            "approvals": 2,
            "approvers": {"usergroups": ["S02SRE"]},
            "expires_minutes": 45,
            "allow_own_team": False,
        },
        {
            "name": "payments-prod-fast",
            "match": {"environment": "prod", "team": "payments"},
            "approvals": 2,
            "approvers": {"teams": ["search"]},
            "expires_minutes": 15,
        },
        {
            "name": "other",
            "match": {"service": "search-api"},
            "approvals": 3,
            "approvers": {"teams": ["sre"]},
        },
    )
    requirement = requirement_for(model, Rollback(service="checkout", env="prod"))
    assert requirement is not None
    assert requirement.rule == "payments-prod-fast"  # 2 approvals, then the shortest expiry
    assert (requirement.approvals, requirement.expires_minutes) == (2, 15)
    assert requirement.teams == ("search",)
    assert requirement.require_reason  # from "prod"
    assert not requirement.allow_own_team  # from "payments-prod"


def test_a_rule_with_zero_approvals_exempts_even_a_high_risk_environment() -> None:
    model = with_policies(
        {
            "name": "deploys-are-fine",
            "match": {"action": "deploy", "environment": "prod-eu"},
            "approvals": 0,
        }
    )
    assert requirement_for(model, Deploy(service="checkout", env="prod-eu")) is None
    assert requirement_for(model, Rollback(service="checkout", env="prod-eu")) is not None


def test_eligibility_by_group_by_team_and_not_from_the_owner_team() -> None:
    requirement = Requirement(
        rule="r",
        approvals=1,
        usergroups=("S02SRE",),
        teams=("search",),
        allow_own_team=False,
        owner_team="payments",
    )
    assert eligible(requirement, person("U02BOB", groups=("S02SRE",)))
    assert eligible(requirement, person("U03CAROL", "search"))
    assert not eligible(requirement, person("U05ERIN"))
    both = person("U09BOTH", "payments", "search")
    assert not eligible(requirement, both)
    assert not_eligible_message(requirement, both) == (
        "Rule `r` needs an approver from outside team `payments`, and you are in it. "
        "Ask <!subteam^S02SRE> or team `search`, not from team `payments`."
    )
    assert not_eligible_message(requirement, person("U05ERIN")) == (
        "Only <!subteam^S02SRE> or team `search`, not from team `payments` may vote on this "
        "request (rule `r`), and you are not one of them. Nothing was recorded."
    )


def test_requirement_survives_the_database_round_trip() -> None:
    requirement = requirement_for(sample(), Rollback(service="checkout", env="prod"))
    assert requirement is not None
    assert Requirement.from_json(requirement.to_json()) == requirement


def test_explain_names_the_rule_and_whether_the_person_may_approve() -> None:
    model = sample()
    text = explain(
        model,
        Target.of(model, Rollback(service="checkout", env="prod")),
        person("U01ALICE", "payments", groups=()),
    )
    assert text.splitlines() == [
        "action rollback on service checkout (team payments) in environment prod",
        "  matches rule 'prod-changes': 1 approval(s)",
        "needs 1 approval(s) under 'prod-changes' from user group S02SRE or team sre, "
        "within 30 min",
        "U01ALICE may not approve it (and never their own request); teams: payments",
    ]
    staging = explain(model, Target("rollback", "staging", "checkout", "payments"))
    assert staging.splitlines()[-1] == "no approval needed: it runs at once"


def test_an_approver_team_unknown_to_the_catalog_is_a_config_problem() -> None:
    text = SAMPLE_CONFIG.read_text().replace("teams: [sre]", "teams: [sres]")
    _, problems = check_platform_text(text)
    assert [str(p).split(": ", 1)[1] for p in problems] == [
        "approval_policies[0].approvers.teams[0]: team 'sres' is not defined; did you mean 'sre'?"
    ]


def _request(
    state: str, votes: tuple[Vote, ...] = (), closed: str | None = None
) -> ApprovalRequest:
    requirement = requirement_for(sample(), Rollback(service="checkout", env="prod"))
    assert requirement is not None
    return ApprovalRequest(
        id="a1",
        run_id="r1",
        fingerprint="f",
        state=state,
        requested_by="U01ALICE",
        summary="rollback(service=checkout, env=prod)",
        change_lines=("image: checkout:1.4.2 -> 1.4.1 (revision 2 -> 3)",),
        requirement=requirement,
        expires_at=datetime(2026, 11, 27, 9, 30, tzinfo=UTC),
        created_at=datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
        service="checkout",
        environment="prod",
        reason="<!channel> bad deploy",
        closed_reason=closed,
        votes=votes,
    )


def test_open_card_says_what_changes_who_may_approve_and_carries_only_the_id() -> None:
    text, blocks = render_card(_request("pending"))
    assert text == (
        ":lock: *Approval needed*: rollback(service=checkout, env=prod) (asked by <@U01ALICE>)"
    )
    details = blocks[1]["text"]["text"]
    assert "• image: checkout:1.4.2 -&gt; 1.4.1 (revision 2 -&gt; 3)" not in details
    assert "• image: checkout:1.4.2 -> 1.4.1 (revision 2 -> 3)" in details  # already mrkdwn
    assert "*Reason:* &lt;!channel&gt; bad deploy" in details  # escaped: pings nobody
    assert "*Rule:* `prod-changes`: 1 approval(s) from <!subteam^S02SRE> or team `sre`" in details
    assert "*Expires:* 09:30 UTC" in details and "*Votes:* 0 of 1" in details
    buttons = blocks[-1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [(APPROVE, "a1"), (REJECT, "a1")]


def test_closed_cards_lose_their_buttons_and_say_why() -> None:
    rejected = _request("rejected", (Vote("U02BOB", "reject", "not now"),), closed="not now")
    text, blocks = render_card(rejected)
    assert text.startswith(":no_entry: *Rejected*")
    assert (
        blocks[-1]["elements"][0]["text"] == "Rejected by <@U02BOB>: not now. Nothing was changed."
    )
    stale = render_card(_request("stale", closed="image is now 1.4.3"))[1]
    assert stale[-1]["elements"][0]["text"] == (
        "prod moved since: image is now 1.4.3. Nothing was changed; ask again."
    )
    approved = render_card(_request("approved", (Vote("U02BOB", "approve"),)))[1]
    assert "*Votes:* 1 of 1: <@U02BOB> approved" in approved[1]["text"]["text"]
    for blocks_ in (blocks, stale, approved):
        assert all(b["type"] != "actions" for b in blocks_)


def test_policy_explain_command_offline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLATFORM_CONFIG", str(SAMPLE_CONFIG))
    assert main(["policy", "explain", "rollback", "checkout", "prod", "--as", "U01ALICE"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "action rollback on service checkout (team payments) in environment prod",
        "  matches rule 'prod-changes': 1 approval(s)",
        "needs 1 approval(s) under 'prod-changes' from user group S02SRE or team sre, "
        "within 30 min",
        "U01ALICE may not approve it (and never their own request); teams: payments",
        "(Slack user groups not checked: set SLACK_BOT_TOKEN to check them)",
    ]
    assert main(["policy", "explain", "rollback", "chekout", "prod"]) == 2
    assert capsys.readouterr().err == (
        "platform-bot: No service named 'chekout'; did you mean 'checkout'?\n"
    )


def test_rule_summary_for_check_config() -> None:
    assert rule_summary(sample())[:3] == [
        "checkout in staging: no approval",
        "checkout in prod: prod-changes (1 approval(s) from user group S02SRE or team sre)",
        "checkout in prod-eu: risk: high default (1 approval(s) from platform admins)",
    ]


def test_a_usergroup_slack_does_not_know_is_named_with_its_path() -> None:
    model = with_policies(
        {
            "name": "oncall",
            "match": {"environment": "prod"},
            "approvers": {"usergroups": ["S09NOPE"]},
        }
    )
    assert unknown_usergroups(model, {"S01PAYMENTS", "S02SRE"}) == [
        "approval_policies[0].approvers.usergroups[0]: Slack has no user group S09NOPE "
        "(rule 'oncall'), so nobody can approve through it; write the id usergroups.list "
        "shows (S...)"
    ]
