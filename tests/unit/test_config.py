"""platform.yml: the sample is valid, and every mistake is reported with its path and line.

Broken configs are made from the sample by one small edit each, the way a person
would break it, so a problem's line is found in the edited text, not hard-coded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from catalog import Catalog, UnknownName
from catalog.load import (
    ConfigError,
    Problem,
    check_platform_text,
    load_platform_model,
    parse_platform_model,
)
from tests.unit.fakes import SAMPLE_CONFIG

SAMPLE = SAMPLE_CONFIG.read_text(encoding="utf-8")
PROD_RISK = "risk: high                      #"
"""prod's risk line (prod-eu has one too, without the comment)."""


def edit(old: str, new: str, text: str = SAMPLE) -> str:
    """The text with one exact, unique piece replaced (fails loudly if the sample changed)."""
    assert text.count(old) == 1, f"{old!r} is not once in the sample"
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line containing `needle`."""
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(lines) == 1, f"{needle!r} is on lines {lines}"
    return lines[0]


def problems_of(text: str) -> list[str]:
    _, problems = check_platform_text(text)
    assert problems, "expected problems"
    with pytest.raises(ConfigError) as caught:
        parse_platform_model(text)
    assert caught.value.problems == problems
    return [str(p) for p in problems]


# -- the sample -------------------------------------------------------------------------


def test_the_sample_config_is_valid() -> None:
    model, problems = check_platform_text(SAMPLE)

    assert problems == []
    assert model is not None
    assert set(model.teams) == {"payments", "search", "sre"}
    assert set(model.services) == {"checkout", "refunds", "search-api"}
    assert set(model.environments) == {"staging", "prod", "prod-eu"}
    assert [p.name for p in model.approval_policies] == [
        "prod-changes",
        "prod-secrets",
        "prod-access",
        "prod-access-extend",
        "prod-restore",
        "large-environments",
        "long-environments",
    ]
    assert model.on_demand.ingress_domain == "envs.sandbox.example.com"
    assert model.on_demand.teams["search"].cpu_budget == 2


def test_the_sample_loads_from_its_file() -> None:
    model = load_platform_model(SAMPLE_CONFIG)

    assert model.services["checkout"].owner == "payments"
    assert model.environments["prod"].risk == "high"


def test_an_empty_file_is_an_empty_platform() -> None:
    model, problems = check_platform_text("# nothing yet\n")

    assert problems == []
    assert model is not None
    assert model.teams == {}


# -- one problem each -------------------------------------------------------------------


def test_a_typo_in_an_owner_names_path_line_and_suggestion() -> None:
    text = edit(
        "owner: payments\n    description: The checkout API",
        "owner: paymnts\n    description: The checkout API",
    )

    problems = problems_of(text)

    assert problems == [
        f"line {line_of(text, 'owner: paymnts')}: services.checkout.owner: "
        "team 'paymnts' is not defined; did you mean 'payments'?"
    ]


def test_the_owner_problem_has_its_parts() -> None:
    text = edit("owner: search", "owner: paymnts")

    _, problems = check_platform_text(text)

    assert problems == [
        Problem(
            path="services.search-api.owner",
            message="team 'paymnts' is not defined; did you mean 'payments'?",
            line=line_of(text, "owner: paymnts"),
        )
    ]


def test_a_reference_to_nothing_close_has_no_suggestion() -> None:
    text = edit("owner: search", "owner: zzz")

    assert problems_of(text) == [
        f"line {line_of(text, 'owner: zzz')}: services.search-api.owner: team 'zzz' is not defined"
    ]


@pytest.mark.parametrize(
    ("old", "new", "path", "key", "meant"),
    [
        ("templates_dir:", "template_dir:", "template_dir", "template_dir", "templates_dir"),
        ("members: [U01ALICE]", "membrs: [U01ALICE]", "teams.payments.membrs", "membrs", "members"),
        (
            "cluster: sandbox-prod\n",
            "clustr: sandbox-prod\n",
            "environments.prod.clustr",
            "clustr",
            "cluster",
        ),
        ("runbook:", "runbok:", "services.checkout.runbok", "runbok", "runbook"),
        ("admins: [U04DAVE]", "admnis: [U04DAVE]", "platform.admnis", "admnis", "admins"),
        (
            "match: {environment: prod}",
            "match: {enviroment: prod}",
            "approval_policies[0].match.enviroment",
            "enviroment",
            "environment",
        ),
        (
            "approvers: {teams: [sre],",
            "approvers: {team: [sre],",
            "approval_policies[0].approvers.team",
            "team",
            "teams",
        ),
        (
            "expires_minutes: 30",
            "expire_minutes: 30",
            "approval_policies[0].expire_minutes",
            "expire_minutes",
            "expires_minutes",
        ),
    ],
)
def test_an_unknown_key_is_reported_with_a_suggestion(
    old: str, new: str, path: str, key: str, meant: str
) -> None:
    text = edit(old, new)

    problems = problems_of(text)

    expected = (
        f"line {line_of(text, new.strip())}: {path}: unknown key '{key}'; did you mean '{meant}'?"
    )
    assert expected in problems


def test_an_unknown_key_with_nothing_close_is_still_reported() -> None:
    text = edit(
        "templates_dir: ../../../templates", "templates_dir: ../../../templates\nflavour: vanilla"
    )

    assert problems_of(text) == [f"line {line_of(text, 'flavour')}: flavour: unknown key 'flavour'"]


def test_a_renamed_required_key_is_also_reported_missing() -> None:
    text = edit("cluster: sandbox-prod\n", "clustr: sandbox-prod\n")

    problems = problems_of(text)

    assert any(p.endswith("environments.prod.cluster: is required") for p in problems)
    assert len(problems) == 2


def test_a_bad_risk_says_which_values_are_allowed() -> None:
    text = edit(PROD_RISK, "risk: extreme #")

    assert problems_of(text) == [
        f"line {line_of(text, 'risk: extreme')}: environments.prod.risk: "
        "'extreme' is not allowed; use one of 'low', 'medium' or 'high'"
    ]


def test_a_bad_backend_says_which_values_are_allowed() -> None:
    text = edit(
        "cluster: sandbox-prod\n    backend: kubernetes", "cluster: sandbox-prod\n    backend: helm"
    )

    assert problems_of(text) == [
        f"line {line_of(text, 'backend: helm')}: environments.prod.backend: "
        "'helm' is not allowed; use one of 'kubernetes' or 'argocd'"
    ]


def test_a_bad_environment_in_a_service_list() -> None:
    old = "owner: search\n    environments: [staging, prod]"
    text = edit(old, "owner: search\n    environments: [staging, prd]")

    assert problems_of(text) == [
        f"line {line_of(text, '[staging, prd]')}: services.search-api.environments[1]: "
        "environment 'prd' is not defined; did you mean 'prod'?"
    ]


def test_a_bad_environment_in_an_approval_policy() -> None:
    text = edit("match: {environment: prod}", "match: {environment: prd}")

    assert problems_of(text) == [
        f"line {line_of(text, 'environment: prd')}: approval_policies[0].match.environment: "
        "environment 'prd' is not defined; did you mean 'prod'?"
    ]


@pytest.mark.parametrize(
    ("match", "kind", "name", "meant"),
    [
        ("{service: chekout}", "service", "chekout", "checkout"),
        ("{team: paymnts}", "team", "paymnts", "payments"),
    ],
)
def test_bad_service_and_team_in_an_approval_policy(
    match: str, kind: str, name: str, meant: str
) -> None:
    text = edit("match: {environment: prod}", f"match: {match}")

    assert problems_of(text) == [
        f"line {line_of(text, f'match: {match}')}: approval_policies[0].match.{kind}: "
        f"{kind} '{name}' is not defined; did you mean '{meant}'?"
    ]


def test_a_bad_approver_team() -> None:
    text = edit("approvers: {teams: [sre],", "approvers: {teams: [sre, srre],")

    assert problems_of(text) == [
        f"line {line_of(text, 'srre')}: approval_policies[0].approvers.teams[1]: "
        "team 'srre' is not defined; did you mean 'sre'?"
    ]


@pytest.mark.parametrize(
    "approvers", ["approvers: {}", "approvers: {teams: [], usergroups: []}", "approvals: 2"]
)
def test_a_policy_with_approvals_but_no_approvers(approvers: str) -> None:
    old = "approvals: 1\n    approvers: {teams: [sre], usergroups: [S02SRE]}"
    text = edit(
        old, approvers if approvers.startswith("approvals") else f"approvals: 1\n    {approvers}"
    )

    problems = problems_of(text)

    assert len(problems) == 1
    assert problems[0].endswith(
        "approval_policies[0].approvers: approvals are required but nobody may give them; "
        "list approvers.teams or approvers.usergroups"
    )
    assert problems[0].startswith("line ")


def test_a_policy_needing_no_approvals_needs_no_approvers() -> None:
    old = "approvals: 1\n    approvers: {teams: [sre], usergroups: [S02SRE]}"
    text = edit(old, "approvals: 0")

    assert check_platform_text(text)[1] == []


@pytest.mark.parametrize("approvals", ["11", "-1", "two"])
def test_approvals_out_of_range_are_refused(approvals: str) -> None:
    text = edit("approvals: 1", f"approvals: {approvals}")

    problems = problems_of(text)

    assert len(problems) == 1
    assert problems[0].startswith(
        f"line {line_of(text, 'approvals:')}: approval_policies[0].approvals: "
    )


# -- YAML itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("teams:\n  payments: {slack_channel: '#payments'\nservices: {}\n", 3),
        ("teams:\n  payments:\n    slack_channel: '#payments'\n   members: [U1]\n", 4),
        ("teams: [\n", 2),
        ("teams:\n\tpayments: {}\n", 2),
    ],
)
def test_invalid_yaml_is_reported_with_its_line(text: str, line: int) -> None:
    (problem,) = problems_of(text)

    assert problem.startswith(f"line {line}: not valid YAML: ")


def test_yaml_tags_that_build_python_objects_are_refused() -> None:
    (problem,) = problems_of("teams: !!python/object/apply:os.system ['true']\n")

    assert "not valid YAML" in problem


@pytest.mark.parametrize("text", ["- teams\n- services\n", "just a string\n", "42\n"])
def test_a_top_level_that_is_not_a_mapping(text: str) -> None:
    assert problems_of(text) == ["line 1: the top level must be a mapping (teams:, services:, ...)"]


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("teams: [payments]\n", "teams"),
        ("services:\n  checkout: yes\n", "services.checkout"),
        ("teams:\n  x:\n    slack_channel: '#x'\n    members: U01ALICE\n", "teams.x.members"),
        ("approval_policies: {prod: 1}\n", "approval_policies"),
    ],
)
def test_a_wrong_shape_is_reported_at_its_path(text: str, path: str) -> None:
    problems = problems_of(text)

    assert any(p.split(": ")[1] == path for p in problems), problems


# -- names and Slack identifiers --------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "kind", "name"),
    [
        ("  search:\n", "  Search:\n", "team", "Search"),
        ("  prod:\n", "  prod_eu:\n", "environment", "prod_eu"),
        ("  refunds:\n", "  1refunds:\n", "service", "1refunds"),
        ("  refunds:\n", "  refunds-:\n", "service", "refunds-"),
        ("  refunds:\n", "  " + "r" * 41 + ":\n", "service", "r" * 41),
        ("  refunds:\n", "  re.funds:\n", "service", "re.funds"),
    ],
)
def test_a_name_that_is_not_a_dns_label(old: str, new: str, kind: str, name: str) -> None:
    problems = problems_of(edit(old, new))

    without_lines = [p.split(": ", 1)[1] for p in problems]
    assert (
        f"{kind}s.{name}: {kind} name '{name}' must be lowercase letters, digits and '-', "
        "start with a letter, and be at most 40 characters"
    ) in without_lines


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("  search:\n", "  Search:\n", "teams.Search"),
        ("  refunds:\n", "  1refunds:\n", "services.1refunds"),
        ("services:", "service:", "service"),
    ],
)
def test_a_problem_with_a_key_points_at_the_key(old: str, new: str, path: str) -> None:
    text = edit(old, new)

    problems = problems_of(text)

    assert any(p.startswith(f"line {line_of(text, new.strip())}: {path}: ") for p in problems)


def test_a_name_of_forty_characters_is_fine() -> None:
    text = edit("  refunds:\n", "  " + "r" * 40 + ":\n")

    assert check_platform_text(text)[1] == []


@pytest.mark.parametrize("member", ["alice", "u01alice", "U1", "alice@example", "@alice"])
def test_a_member_that_is_neither_a_user_id_nor_an_email(member: str) -> None:
    text = edit("members: [U01ALICE]", f"members: [U01ALICE, '{member}']")

    assert problems_of(text) == [
        f"line {line_of(text, 'members: [U01ALICE,')}: teams.payments.members: "
        f"member '{member}' is neither a Slack user id (U…) nor an e-mail address"
    ]


@pytest.mark.parametrize("member", ["U01ALICE", "W012ABC", "alice@example.com"])
def test_user_ids_and_emails_are_members(member: str) -> None:
    text = edit("members: [U01ALICE]", f"members: ['{member}']")

    assert check_platform_text(text)[1] == []


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ('slack_channel: "#payments"', 'slack_channel: "payments"', "teams.payments.slack_channel"),
        ('slack_channel: "#search"', 'slack_channel: "#Search Team"', "teams.search.slack_channel"),
        ('audit_channel: "#platform-audit"', "audit_channel: c0123", "platform.audit_channel"),
        ("slack_usergroup: S02SRE", "slack_usergroup: sre-oncall", "teams.sre.slack_usergroup"),
        (
            "slack_usergroup: S01PAYMENTS",
            "slack_usergroup: U01ALICE",
            "teams.payments.slack_usergroup",
        ),
        (
            "admins_usergroup: S03PLATFORM",
            "admins_usergroup: '@platform'",
            "platform.admins_usergroup",
        ),
    ],
)
def test_bad_channel_and_usergroup_formats(old: str, new: str, path: str) -> None:
    text = edit(old, new)

    (problem,) = problems_of(text)

    assert problem.startswith(f"line {line_of(text, new)}: {path}: ")


@pytest.mark.parametrize(
    ("old", "new", "value"),
    [
        ('slack_channel: "#payments"', 'slack_channel: "payments"', "payments"),
        ("slack_usergroup: S02SRE", "slack_usergroup: sre-oncall", "sre-oncall"),
    ],
)
def test_bad_channel_and_usergroup_messages_say_what_to_write(
    old: str, new: str, value: str
) -> None:
    (problem,) = problems_of(edit(old, new))

    assert "pattern" not in problem
    assert f"'{value}'" in problem


def test_an_admin_that_is_neither_a_user_id_nor_an_email() -> None:
    text = edit("admins: [U04DAVE]", "admins: [dave]")

    assert check_platform_text(text)[1] != []


def test_an_approver_usergroup_that_is_not_a_usergroup_id() -> None:
    text = edit("usergroups: [S02SRE]", "usergroups: [sre-oncall]")

    assert check_platform_text(text)[1] != []


def test_a_duplicate_name_is_reported() -> None:
    text = edit("  refunds:\n", "  checkout:\n")

    problems = problems_of(text)

    assert any("checkout" in p for p in problems)


# -- every problem at once --------------------------------------------------------------


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    text = SAMPLE
    for old, new in [
        (PROD_RISK, "risk: extreme #"),
        ("runbook:", "runbok:"),
        ("owner: search", "owner: serch"),
        ("match: {environment: prod}", "match: {environment: prd}"),
        ("members: [U01ALICE]", "members: [alice]"),
        ("  search:\n", "  search:\n    colour: blue\n"),
    ]:
        text = edit(old, new, text)

    problems = problems_of(text)

    assert sorted(problems) == sorted(
        [
            f"line {line_of(text, 'risk: extreme')}: environments.prod.risk: "
            "'extreme' is not allowed; use one of 'low', 'medium' or 'high'",
            f"line {line_of(text, 'runbok')}: services.checkout.runbok: "
            "unknown key 'runbok'; did you mean 'runbook'?",
            f"line {line_of(text, 'owner: serch')}: services.search-api.owner: "
            "team 'serch' is not defined; did you mean 'search'?",
            f"line {line_of(text, 'environment: prd')}: approval_policies[0].match.environment: "
            "environment 'prd' is not defined; did you mean 'prod'?",
            f"line {line_of(text, 'members: [alice]')}: teams.payments.members: "
            "member 'alice' is neither a Slack user id (U…) nor an e-mail address",
            f"line {line_of(text, 'colour')}: teams.search.colour: unknown key 'colour'",
        ]
    )


def test_a_config_error_lists_every_problem_under_its_source() -> None:
    text = edit(PROD_RISK, "risk: extreme #", edit("owner: search", "owner: serch"))

    with pytest.raises(ConfigError) as caught:
        parse_platform_model(text, source="conf/platform.yml")

    message = str(caught.value).splitlines()
    assert message[0] == "conf/platform.yml: 2 problem(s)"
    assert sorted(message[1:]) == sorted(f"  {p}" for p in caught.value.problems)


# -- platform-bot check-config ----------------------------------------------------------


def test_check_config_on_the_sample_says_ok(capsys: pytest.CaptureFixture[str]) -> None:
    model = load_platform_model(SAMPLE_CONFIG)

    assert main(["check-config", str(SAMPLE_CONFIG)]) == 0

    out, err = capsys.readouterr()
    first, *rules = out.splitlines()
    assert first == (
        f"{SAMPLE_CONFIG}: ok ({len(model.teams)} teams, {len(model.services)} services, "
        f"{len(model.environments)} environments, {len(model.approval_policies)} policies)"
    )
    assert "  checkout in staging: no approval" in rules
    assert (
        "  checkout in prod: prod-changes (1 approval(s) from user group S02SRE or team sre)"
        in rules
    )
    assert "  checkout in prod-eu: risk: high default (1 approval(s) from platform admins)" in rules
    assert err == ""


def test_check_config_lists_the_problems_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "platform.yml"
    text = edit(PROD_RISK, "risk: extreme #", edit("owner: search", "owner: serch"))
    path.write_text(text, encoding="utf-8")

    assert main(["check-config", str(path)]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"{path}: 2 problem(s)"
    assert (
        f"  line {line_of(text, 'owner: serch')}: services.search-api.owner: team 'serch' "
        "is not defined; did you mean 'search'?"
    ) in lines
    assert any("environments.prod.risk: 'extreme' is not allowed" in line for line in lines)
    assert "Traceback" not in err


def test_check_config_reads_platform_config_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.yml"
    path.write_text(edit("owner: search", "owner: serch"), encoding="utf-8")
    monkeypatch.setenv("PLATFORM_CONFIG", str(path))

    assert main(["check-config"]) == 1

    assert capsys.readouterr().err.startswith(f"{path}: 1 problem(s)")


def test_check_config_on_a_missing_file_says_to_set_platform_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.yml"

    assert main(["check-config", str(missing)]) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"{missing}: 1 problem(s)")
    assert "file not found; set PLATFORM_CONFIG to your platform.yml" in err
    assert "Traceback" not in err


def test_check_config_on_a_directory_says_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path)]) == 1

    assert "cannot read: Is a directory" in capsys.readouterr().err


def test_check_config_on_a_file_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "platform.yml"
    path.write_bytes(b"teams:\n  caf\xe9: {slack_channel: '#cafe'}\n")

    assert main(["check-config", str(path)]) == 1

    assert "UTF-8" in capsys.readouterr().err


# -- catalog lookups --------------------------------------------------------------------

CATALOG = Catalog(load_platform_model(SAMPLE_CONFIG))


@pytest.mark.parametrize(
    ("lookup", "name", "message"),
    [
        (CATALOG.service, "chekout", "No service named 'chekout'; did you mean 'checkout'?"),
        (CATALOG.team, "paymnts", "No team named 'paymnts'; did you mean 'payments'?"),
        (CATALOG.environment, "prd", "No environment named 'prd'; did you mean 'prod'?"),
        (CATALOG.service, "zzz", "No service named 'zzz'; known: checkout, refunds, search-api."),
        (
            CATALOG.channel_of_service,
            "refund",
            "No service named 'refund'; did you mean 'refunds'?",
        ),
        (
            CATALOG.environments_of,
            "serch-api",
            "No service named 'serch-api'; did you mean 'search-api'?",
        ),
    ],
)
def test_catalog_lookups_raise_unknown_name_with_did_you_mean(
    lookup: object, name: str, message: str
) -> None:
    assert callable(lookup)
    with pytest.raises(UnknownName) as caught:
        lookup(name)

    assert str(caught.value) == message
    assert caught.value.name == name
    assert isinstance(caught.value, LookupError)


def test_catalog_answers_who_owns_what_and_where_they_talk() -> None:
    assert CATALOG.services_of("payments") == ["checkout", "refunds"]
    assert CATALOG.services_of("sre") == []
    assert CATALOG.channel_of_service("search-api") == "#search"
    assert CATALOG.environments_of("checkout") == ["staging", "prod", "prod-eu"]
    assert CATALOG.service_names() == ["checkout", "refunds", "search-api"]
    assert CATALOG.team_names() == ["payments", "search", "sre"]


def test_a_service_channel_overrides_its_team_channel() -> None:
    text = edit("owner: search\n", "owner: search\n    slack_channel: '#search-api'\n")

    catalog = Catalog(parse_platform_model(text))

    assert catalog.channel_of_service("search-api") == "#search-api"


def test_on_demand_must_name_a_configured_template_and_teams() -> None:
    text = SAMPLE.replace("  template: staging\n", "  template: stagin\n").replace(
        "    search: {max_environments: 2", "    serch: {max_environments: 2"
    )
    _, problems = check_platform_text(text)
    said = [str(p) for p in problems]
    assert any("on_demand.template" in p and "stagin" in p for p in said), said
    assert any("on_demand.teams.serch" in p for p in said), said


def test_on_demand_default_size_must_be_a_size() -> None:
    text = SAMPLE.replace("  default_size: small\n", "  default_size: huge\n")
    _, problems = check_platform_text(text)
    assert any("default_size 'huge'" in str(p) for p in problems), problems
