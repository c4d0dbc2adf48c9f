"""What operators expect of the command line: `--version`, `<SECRET>_FILE` variants,
a bad LOG_LEVEL refused in one line, and `policy explain` finding platform.yml as
`serve` does.
"""

from __future__ import annotations

import shutil
from importlib.metadata import version
from pathlib import Path

import pytest

from app.cli import main
from app.settings import SECRET_SETTINGS, Settings
from tests.unit.fakes import SAMPLE_CONFIG

SECRET_VARIABLES = [name.upper() for name in SECRET_SETTINGS]


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])

    assert done.value.code == 0
    assert capsys.readouterr().out == f"platform-bot {version('platform-bot')}\n"


def test_every_secret_setting_is_a_secret_or_the_database_url() -> None:
    for name in SECRET_SETTINGS:
        assert name in Settings.model_fields
    secrets = {
        name
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    assert secrets <= set(SECRET_SETTINGS), "a SecretStr setting has no _FILE variant"
    assert set(SECRET_SETTINGS) - secrets == {"database_url"}


def _value(settings: Settings, variable: str) -> str:
    value = getattr(settings, variable.lower())
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_a_file_variant_is_read_without_its_newline(
    variable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    wanted = "postgresql+psycopg://bot:pw@db/bot" if variable == "DATABASE_URL" else "s3cr3t"
    secret.write_text(f"{wanted}\n", encoding="utf-8")
    monkeypatch.setenv(f"{variable}_FILE", str(secret))

    assert _value(Settings(), variable) == wanted


def test_a_file_with_windows_line_ending_is_stripped_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"xoxb-1\r\n")
    monkeypatch.setenv("SLACK_BOT_TOKEN_FILE", str(secret))

    token = Settings().slack_bot_token

    assert token is not None and token.get_secret_value() == "xoxb-1"


@pytest.mark.parametrize("variable", SECRET_VARIABLES)
def test_both_the_variable_and_its_file_is_one_line_and_exit_2(
    variable: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-the-file\n", encoding="utf-8")
    monkeypatch.setenv(variable, "sqlite:///x.db" if variable == "DATABASE_URL" else "hunter2")
    monkeypatch.setenv(f"{variable}_FILE", str(secret))

    assert main(["check-config", str(SAMPLE_CONFIG)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"platform-bot: {variable}_FILE: set {variable} or {variable}_FILE, not both\n")


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "No such file or directory"), (b"\n", "is empty"), (b"\xff\xfe", "not UTF-8")],
)
def test_an_unreadable_or_empty_secret_file_is_one_line_and_exit_2(
    content: bytes | None,
    problem: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secret = tmp_path / "token"
    if content is not None:
        secret.write_bytes(content)
    monkeypatch.setenv("GITLAB_TOKEN_FILE", str(secret))

    assert main(["check-config", str(SAMPLE_CONFIG)]) == 2

    err = capsys.readouterr().err
    assert err.startswith("platform-bot: GITLAB_TOKEN_FILE: ")
    assert problem in err and err.count("\n") == 1


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "ERROR", "critical"])
def test_log_level_names_in_any_case(level: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", level)

    assert Settings().log_level == level.upper()


@pytest.mark.parametrize("level", ["verbose", "10", ""])
def test_a_bad_log_level_is_one_line_and_exit_2(
    level: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_LEVEL", level)

    assert main(["serve"]) == 2

    assert capsys.readouterr().err == (
        "platform-bot: LOG_LEVEL: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL\n"
    )


def test_policy_explain_reads_platform_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "elsewhere.yml"
    shutil.copy(SAMPLE_CONFIG, config)
    monkeypatch.setenv("PLATFORM_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)

    assert main(["policy", "explain", "rollback", "checkout", "prod"]) == 0

    assert "matches rule 'prod-changes'" in capsys.readouterr().out


def test_policy_explain_defaults_to_platform_yml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    assert main(["policy", "explain", "rollback", "checkout", "prod"]) == 2
    assert "platform.yml: 1 problem(s)" in capsys.readouterr().err

    shutil.copy(SAMPLE_CONFIG, tmp_path / "platform.yml")
    assert main(["policy", "explain", "rollback", "checkout", "prod"]) == 0
    assert "matches rule 'prod-changes'" in capsys.readouterr().out
