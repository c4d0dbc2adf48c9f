"""The shared domain: Action fingerprints, mrkdwn escaping, settings and the CLI's first line.

An approval is bound to an Action's fingerprint, so the fingerprint must be exact:
the same change gives the same hash, any other change gives another one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, SecretStr, ValidationError

from app.cli import main
from app.settings import Settings
from kernel.actions import Action
from kernel.ids import ServiceName, SlackUserId
from kernel.mrkdwn import code, escape, truncate
from kernel.ports.platform import AuditEntry
from tests.unit.fakes import (
    ALICE,
    BOB,
    REPO_ROOT,
    SAMPLE_CONFIG,
    FakeAuditLog,
    FakeDirectory,
    FakeRuns,
)


class Rollback(Action):
    kind: ClassVar[str] = "rollback"

    service: str
    env: str
    to_revision: int | None = None
    reason: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    steps: tuple[str, ...] = ()


class Redeploy(Action):
    """Same fields as Rollback, another kind of change."""

    kind: ClassVar[str] = "redeploy"

    service: str
    env: str
    to_revision: int | None = None
    reason: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    steps: tuple[str, ...] = ()


BASE: dict[str, Any] = {
    "service": "checkout",
    "env": "prod",
    "to_revision": 41,
    "reason": "bad deploy",
    "labels": {"ticket": "INC-1"},
    "steps": ("scale", "verify"),
}
OTHER_VALUE: dict[str, Any] = {
    "service": "refunds",
    "env": "staging",
    "to_revision": 40,
    "reason": "bad deploy!",
    "labels": {"ticket": "INC-2"},
    "steps": ("verify", "scale"),
}


# -- Action fingerprints ----------------------------------------------------------------


def test_a_fingerprint_is_stable_for_the_same_fields() -> None:
    one = Rollback(**BASE)
    two = Rollback(**dict(reversed(list(BASE.items()))))  # keyword order does not matter

    assert one.fingerprint() == two.fingerprint() == one.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", one.fingerprint())


def test_a_fingerprint_is_stable_across_versions() -> None:
    # Approvals stored in the database are bound to this value: changing how it is
    # computed (sha256 of {"kind", "fields"} as sorted, compact JSON) silently
    # invalidates every pending approval.
    class Pinned(Action):
        kind: ClassVar[str] = "rollback"
        service: str
        env: str
        to_revision: int

    action = Pinned(service="checkout", env="prod", to_revision=41)

    assert action.fingerprint() == (
        "b18859658b0622befc7b81f94e4f794f66f49f55e56e22181b5b992b4cf428f0"
    )


def test_dict_fields_hash_the_same_in_any_insertion_order() -> None:
    one = Rollback(**{**BASE, "labels": {"a": "1", "b": "2"}})
    two = Rollback(**{**BASE, "labels": {"b": "2", "a": "1"}})

    assert one.fingerprint() == two.fingerprint()


def test_a_default_and_the_same_value_given_hash_the_same() -> None:
    assert (
        Rollback(service="checkout", env="prod").fingerprint()
        == Rollback(service="checkout", env="prod", to_revision=None, reason="").fingerprint()
    )


@pytest.mark.parametrize("field", sorted(Rollback.model_fields))
def test_a_fingerprint_changes_when_any_field_changes(field: str) -> None:
    assert set(OTHER_VALUE) == set(Rollback.model_fields), "give every field another value"
    changed = Rollback(**{**BASE, field: OTHER_VALUE[field]})

    assert changed.fingerprint() != Rollback(**BASE).fingerprint()


def test_two_kinds_with_the_same_fields_differ() -> None:
    assert Rollback(**BASE).model_dump() == Redeploy(**BASE).model_dump()

    assert Rollback(**BASE).fingerprint() != Redeploy(**BASE).fingerprint()


def test_values_that_print_alike_still_differ() -> None:
    base = {"service": "checkout", "env": "prod"}

    fingerprints = {
        Rollback(**base, reason="").fingerprint(),
        Rollback(**base, reason="None").fingerprint(),
        Rollback(**base, reason=" ").fingerprint(),
        Rollback(**base, to_revision=0).fingerprint(),
        Rollback(**base, steps=("a,b",)).fingerprint(),
        Rollback(**base, steps=("a", "b")).fingerprint(),
        Rollback(service="checkout,env=prod", env="").fingerprint(),
    }
    assert len(fingerprints) == 7


ACTIONS = st.builds(
    Rollback,
    service=st.sampled_from(["checkout", "refunds", "chéckout"]),
    env=st.sampled_from(["prod", "staging"]),
    to_revision=st.none() | st.integers(-2, 2),
    reason=st.text(st.characters(exclude_categories=()), max_size=4),
    labels=st.dictionaries(st.sampled_from("ab"), st.sampled_from("xy"), max_size=2),
    steps=st.lists(st.sampled_from("xy"), max_size=2).map(tuple),
)


@settings(max_examples=500, deadline=None)
@given(one=ACTIONS, two=ACTIONS)
def test_fingerprints_are_equal_exactly_when_actions_are(one: Rollback, two: Rollback) -> None:
    assert (one.fingerprint() == two.fingerprint()) == (one == two)


def test_actions_are_frozen() -> None:
    action = Rollback(**BASE)

    with pytest.raises(ValidationError, match="frozen"):
        action.env = "staging"  # type: ignore[misc]
    assert action.env == "prod"


def test_actions_refuse_unknown_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        Rollback(**BASE, revison=40)

    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert caught.value.errors()[0]["loc"] == ("revison",)


def test_actions_refuse_missing_fields() -> None:
    with pytest.raises(ValidationError, match="env"):
        Rollback(service="checkout")  # type: ignore[call-arg]


def test_an_action_says_what_it_does_and_where() -> None:
    action = Rollback(service="checkout", env="prod", to_revision=41)

    assert action.summary().startswith("rollback(service=checkout, env=prod, to_revision=41")
    assert action.affected_service() == "checkout"
    assert action.affected_environment() == "prod"


def test_an_action_without_service_or_env_affects_none() -> None:
    class Announce(Action):
        kind: ClassVar[str] = "announce"
        text: str

    action = Announce(text="hello")

    assert action.affected_service() is None
    assert action.affected_environment() is None


def test_an_action_may_have_a_field_named_service_without_warnings() -> None:
    # DESIGN.md's own example is `Rollback(service="checkout", env="prod")`; a field must
    # not shadow anything on Action (pydantic warns, and filterwarnings=error fails).
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        class DesignRollback(Action):
            kind: ClassVar[str] = "design-rollback"
            service: str
            env: str

    action = DesignRollback(service="checkout", env="prod")
    assert action.fingerprint() != DesignRollback(service="refunds", env="prod").fingerprint()
    assert action.affected_service() == "checkout"


# -- mrkdwn -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<https://evil.example|docs>", "&lt;https://evil.example|docs&gt;"),
        ("fish & chips", "fish &amp; chips"),
        ("&lt;", "&amp;lt;"),  # shows as typed, not as '<'
        ("*bold* _it_ `code` 🚀", "*bold* _it_ `code` 🚀"),
        ("", ""),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def entities_only(text: str) -> bool:
    """No '<' or '>' at all, and every '&' starts one of Slack's three entities."""
    return "<" not in text and ">" not in text and "&" not in re.sub(r"&(amp|lt|gt);", "", text)


@given(st.text(st.characters(exclude_categories=())))
def test_escaped_text_is_inert_and_shows_as_typed(text: str) -> None:
    escaped = escape(text)

    assert entities_only(escaped)
    assert unescape(escaped) == text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("checkout", "`checkout`"),
        ("a`b", "`a'b`"),
        ("``` <!here>", "`''' &lt;!here&gt;`"),
        ("", "``"),
    ],
)
def test_code(text: str, shown: str) -> None:
    assert code(text) == shown


@given(st.text(st.characters(exclude_categories=())))
def test_code_cannot_be_broken_out_of(text: str) -> None:
    shown = code(text)

    assert shown.startswith("`")
    assert shown.endswith("`")
    assert shown.count("`") == 2
    assert entities_only(shown[1:-1])


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("abcdefghijk", 10, "abcdefghi…"),
        ("abcdef&amp;", 10, "abcdef…"),  # '&amp' would be cut: drop the whole entity
        ("abcd&amp;xyz", 10, "abcd&amp;…"),  # whole entity fits
        ("&lt;&lt;&lt;", 7, "&lt;…"),
        ("abc", 1, "…"),
        ("by <@U01ALICE> at 4", 10, "by …"),  # never half a mention
        ("see <https://x.test/a|docs>", 20, "see …"),  # nor half a link
    ],
)
def test_truncate(text: str, limit: int, cut: str) -> None:
    assert truncate(text, limit) == cut


@given(text=st.text(st.characters(exclude_categories=())), limit=st.integers(1, 60))
def test_truncate_never_cuts_an_entity_in_half(text: str, limit: int) -> None:
    escaped = escape(text)

    cut = truncate(escaped, limit)

    assert len(cut) <= limit
    if cut == escaped:
        return
    assert cut.endswith("…")
    kept = cut.removesuffix("…")
    assert escaped.startswith(kept)
    assert entities_only(kept)


# -- settings ---------------------------------------------------------------------------


def test_settings_defaults_match_the_configuration_contract() -> None:
    s = Settings()

    assert s.database_url == "sqlite:///platform-bot.db"
    assert s.port == 3000
    assert s.slack_api_url == "https://slack.com/api/"
    assert s.platform_config == Path("platform.yml")
    assert s.host == "0.0.0.0"  # noqa: S104
    assert s.log_level == "INFO"
    assert s.log_format == "json"
    assert s.slack_bot_token is None
    assert s.slack_signing_secret is None
    assert s.slack_app_token is None
    assert s.alertmanager_webhook_token is None
    assert s.vault_addr is None
    assert not s.socket_mode


@pytest.mark.parametrize(
    ("variable", "value", "field", "read"),
    [
        ("DATABASE_URL", "postgresql+psycopg://db/platform", "database_url", None),
        ("PORT", "8080", "port", 8080),
        ("HOST", "127.0.0.1", "host", None),
        ("PLATFORM_CONFIG", "/etc/platform/platform.yml", "platform_config", None),
        ("SLACK_API_URL", "http://127.0.0.1:9999/api/", "slack_api_url", None),
        ("SLACK_TEAM_ID", "T0123", "slack_team_id", None),
        ("KUBECONFIG", "/home/bot/.kube/config", "kubeconfig", None),
        ("VAULT_ADDR", "http://127.0.0.1:8200", "vault_addr", None),
        ("GITLAB_URL", "https://gitlab.example.com", "gitlab_url", None),
        ("ARGOCD_URL", "https://argocd.example.com", "argocd_url", None),
        ("PROMETHEUS_URL", "http://prometheus:9090", "prometheus_url", None),
        ("ALERTMANAGER_URL", "http://alertmanager:9093", "alertmanager_url", None),
        ("GRAFANA_URL", "https://grafana.example.com", "grafana_url", None),
        ("LOG_LEVEL", "DEBUG", "log_level", None),
        ("LOG_FORMAT", "text", "log_format", None),
        ("WORKER_ID", "bot-1", "worker_id", None),
    ],
)
def test_settings_read_the_contract_variable_names(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, read: object
) -> None:
    monkeypatch.setenv(variable, value)

    got = getattr(Settings(), field)

    expected = read if read is not None else value
    assert str(got).rstrip("/") == str(expected).rstrip("/")


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("SLACK_BOT_TOKEN", "slack_bot_token"),
        ("SLACK_SIGNING_SECRET", "slack_signing_secret"),
        ("SLACK_APP_TOKEN", "slack_app_token"),
        ("VAULT_TOKEN", "vault_token"),
        ("GITLAB_TOKEN", "gitlab_token"),
        ("ARGOCD_TOKEN", "argocd_token"),
        ("ALERTMANAGER_WEBHOOK_TOKEN", "alertmanager_webhook_token"),
    ],
)
def test_secrets_are_read_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, variable: str, field: str
) -> None:
    monkeypatch.setenv(variable, "hunter2-very-secret")

    s = Settings()
    secret = getattr(s, field)

    assert isinstance(secret, SecretStr)
    assert secret.get_secret_value() == "hunter2-very-secret"
    for shown in (repr(s), str(s), repr(secret), str(secret), s.model_dump_json()):
        assert "hunter2" not in shown


def test_an_app_token_selects_socket_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")

    assert Settings().socket_mode


def test_every_variable_in_the_readme_contract_is_a_setting() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n#", 1)[0]
    variables = {
        name
        for row in section.splitlines()
        if row.startswith("| `")
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    }

    assert "DATABASE_URL" in variables
    assert "PORT" in variables
    assert variables - {name.upper() for name in Settings.model_fields} == set()


# -- the CLI's first line ---------------------------------------------------------------


def test_an_invalid_port_stops_the_cli_with_one_line_naming_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "eighty")

    assert main(["check-config", str(SAMPLE_CONFIG)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("platform-bot: PORT: ")
    assert "Traceback" not in err


def test_a_port_out_of_range_is_explained_as_the_readme_shows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "99999")

    assert main(["check-config", str(SAMPLE_CONFIG)]) == 2

    assert capsys.readouterr().err == (
        "platform-bot: PORT: Input should be less than or equal to 65535\n"
    )


def test_each_bad_value_gets_its_own_line_without_the_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "-1")
    monkeypatch.setenv("LOG_FORMAT", "xml")
    monkeypatch.setenv("VAULT_ADDR", "hunter2 is not a url")

    assert main(["check-config", str(SAMPLE_CONFIG)]) == 2

    lines = capsys.readouterr().err.splitlines()
    assert sorted(line.split(":")[1].strip() for line in lines) == [
        "LOG_FORMAT",
        "PORT",
        "VAULT_ADDR",
    ]
    assert all(line.startswith("platform-bot: ") for line in lines)
    assert not any("hunter2" in line for line in lines)


def test_the_installed_entry_point_exits_2_on_an_invalid_port() -> None:
    env = {**os.environ, "PORT": "not-a-port"}

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from app.cli import main; sys.exit(main())",
            "check-config",
            str(SAMPLE_CONFIG),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("platform-bot: PORT: ")
    assert done.stderr.count("\n") == 1


# -- the fakes keep their ports' promises -----------------------------------------------


async def test_fake_runs_are_idempotent_on_the_key() -> None:
    runs = FakeRuns()
    action = Rollback(service="checkout", env="prod")

    first = await runs.submit(action, requested_by=ALICE, idempotency_key="t-1")
    again = await runs.submit(action, requested_by=ALICE, idempotency_key="t-1")
    other = await runs.submit(action, requested_by=BOB, idempotency_key="t-2")

    assert first.created
    assert not again.created
    assert again.run_id == first.run_id
    assert other.created
    assert other.run_id != first.run_id
    assert len(runs.submissions) == 3
    assert set(runs.runs) == {"t-1", "t-2"}


async def test_fake_audit_log_reads_newest_first_and_filters() -> None:
    log = FakeAuditLog()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for i, service in enumerate(["checkout", "refunds", "checkout", None]):
        await log.record(
            AuditEntry(
                at=at,
                actor=SlackUserId(ALICE),
                event=f"e{i}",
                service=ServiceName(service) if service else None,
            )
        )

    assert [e.event for e in await log.recent()] == ["e3", "e2", "e1", "e0"]
    assert [e.event for e in await log.recent(service=ServiceName("checkout"))] == ["e2", "e0"]
    assert [e.event for e in await log.recent(limit=1)] == ["e3"]


async def test_fake_directory_knows_groups_and_emails() -> None:
    directory = FakeDirectory({"S1": {"U1", "U2"}}, {"U1": "u1@example.com"})

    assert await directory.usergroup_members("S1") == frozenset({"U1", "U2"})
    assert await directory.usergroup_members("S404") == frozenset()
    assert await directory.email_of(SlackUserId("U1")) == "u1@example.com"
    assert await directory.email_of(SlackUserId("U2")) is None
