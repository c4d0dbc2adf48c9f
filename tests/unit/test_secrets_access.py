"""Secrets and access, without sockets: keys and values checked without echoing them,
durations, what Actions show people, the page's headers, platform.yml's identities."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from catalog.load import ConfigError, parse_platform_model
from features.access.actions import GrantAccess, duration_text, parse_duration
from features.kit.commands import Arguments
from features.secrets.actions import MAX_VALUE_BYTES, SetSecret, check_key, check_value
from features.secrets.command import SecretCommand
from features.secrets.page import CSP, STYLE, security_headers
from kernel.errors import UsageError
from tests.unit.fakes import make_context


@pytest.mark.parametrize("key", ["API_KEY", "_X", "A1", "X" * 64])
def test_keys_are_environment_variable_names(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "typed", ["api_key", "1ABC", "A-B", "A=hunter2", "../../sys", "X" * 65, "", "ÄBC"]
)
def test_a_bad_key_is_refused_without_repeating_it(typed: str) -> None:
    with pytest.raises(UsageError) as refused:
        check_key(typed)
    assert "not a key name" in refused.value.message
    assert not typed or typed not in refused.value.message


def test_values_are_bounded_and_text() -> None:
    assert check_value("x") is None
    assert check_value("x" * MAX_VALUE_BYTES) is None
    assert "at most" in (check_value("x" * (MAX_VALUE_BYTES + 1)) or "")
    assert "empty" in (check_value("") or "")
    assert "NUL" in (check_value("a\x00b") or "")
    big = check_value("é" * MAX_VALUE_BYTES) or ""
    assert "é" not in big and "bytes" in big


async def test_a_value_typed_in_slack_is_refused_and_not_echoed() -> None:
    command = SecretCommand(desk=None)  # type: ignore[arg-type] - never reached
    ctx = make_context()
    for words in (
        ["set", "checkout", "prod", "API_KEY", "s3cr3t-value"],
        ["set", "checkout", "prod", "API_KEY=s3cr3t-value"],
        ["set", "checkout", "prod", "API_KEY", "two", "s3cr3t-value"],
    ):
        reply = await command.run(ctx, Arguments(words, usage=command.full_usage()))
        assert "looks like a secret value" in reply.text and "rotate it" in reply.text
        assert "s3cr3t" not in reply.text and "two" not in reply.text


async def test_secret_set_refuses_options_without_echoing_them() -> None:
    command = SecretCommand(desk=None)  # type: ignore[arg-type]
    with pytest.raises(UsageError) as refused:
        await command.run(
            make_context(),
            Arguments(["set", "checkout", "prod", "KEY", "--value=s3cr3t"], usage="u"),
        )
    assert "s3cr3t" not in refused.value.message


def test_what_a_set_secret_shows_people_is_its_length_and_hash() -> None:
    action = SetSecret(
        service="checkout",
        env="prod",
        team="payments",
        key="STRIPE_KEY",
        pending_id="p1",
        length=27,
        digest="cf6dfb0acdd4",
        from_version=2,
    )
    shown = " ".join([action.summary(), *action.change_lines()])
    assert "27 characters" in shown and "cf6dfb0acdd4" in shown
    assert "secret/payments/checkout/prod/STRIPE_KEY" in shown
    assert action.lock_key() == "secret:checkout/prod/STRIPE_KEY"
    other = action.model_copy(update={"digest": "000000000000"})
    assert other.fingerprint() != action.fingerprint()  # another value, another approval


@pytest.mark.parametrize(
    ("typed", "minutes"), [("30m", 30), ("2h", 120), ("1h30m", 90), ("1d", 1440), ("2H", 120)]
)
def test_durations(typed: str, minutes: int) -> None:
    assert parse_duration(typed, max_hours=24) == minutes
    assert parse_duration(duration_text(minutes), max_hours=24) == minutes


@pytest.mark.parametrize("typed", ["", "0m", "soon", "2", "1h-1m", "9h", "h"])
def test_bad_durations_say_what_to_type(typed: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(typed, max_hours=8)


def test_a_grant_shows_exactly_what_it_binds() -> None:
    grant = GrantAccess(
        service="checkout",
        env="prod",
        team="payments",
        user="U01ALICE",
        role="edit",
        cluster_role="edit",
        subject_kind="User",
        subject_name="alice@example.com",
        namespace="checkout-prod",
        minutes=120,
        reason="INC-1",
    )
    lines = " ".join(grant.change_lines())
    assert "<@U01ALICE> gets *edit*" in lines and "for 2h" in lines
    assert "User `alice@example.com` -> ClusterRole `edit`" in lines
    longer = grant.model_copy(update={"minutes": 480})
    assert longer.fingerprint() != grant.fingerprint()


def test_the_page_headers_forbid_everything_but_its_own_form_and_style() -> None:
    headers = security_headers(https=True)
    digest = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    assert headers["Content-Security-Policy"] == CSP
    assert CSP.startswith("default-src 'none'; ")
    assert f"style-src 'sha256-{digest}'" in CSP and "script-src" not in CSP
    assert "form-action 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" in headers
    assert "Strict-Transport-Security" not in security_headers(https=False)


def _with_access(block: str) -> str:
    return (
        "teams:\n  t: {slack_channel: '#t'}\nenvironments:\n  prod: {cluster: c}\n"
        f"services:\n  s: {{owner: t, environments: [prod]}}\naccess:\n{block}"
    )


def test_identities_map_slack_people_to_one_cluster_user_or_group() -> None:
    model = parse_platform_model(
        _with_access(
            "  identities:\n    U01ALICE: {user: alice@example.com}\n"
            "    bob@example.com: {group: oidc:sre}\n"
        )
    )
    identities: dict[str, Any] = dict(model.access.identities)
    assert identities["U01ALICE"].user == "alice@example.com"
    assert identities["bob@example.com"].group == "oidc:sre"
    assert model.access.roles["debug"] == "platform-debug"


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("  identities:\n    U01A: {user: a, group: b}\n", "exactly one of `user` or `group`"),
        ("  identities:\n    U01A: {}\n", "exactly one of `user` or `group`"),
        ("  identities:\n    U01A: {user: 'system:masters'}\n", "not `system:`"),
        ("  identities:\n    U01A: {user: 'a b'}\n", "no spaces"),
        ("  identities:\n    someone: {user: a}\n", "neither a Slack user id"),
        ("  roles: {admin: cluster-admin}\n", "roles"),
        ("  max_hours: 0\n", "max_hours"),
    ],
)
def test_check_config_refuses_bad_identities(block: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_platform_model(_with_access(block))
    assert problem in str(refused.value)
