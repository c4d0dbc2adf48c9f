"""`platform-bot`: serve, check-config, db, templates check, policy explain, --version.

(The sandbox is a program of its own, `platform-bot-sandbox`; see sandbox.app.)

Every failure a person can fix ends in one clear line and a non-zero exit, never a
stack trace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from engine.logs import configure_logging

if TYPE_CHECKING:
    from catalog import Catalog
    from catalog.model import PlatformModel
    from features.approvals.policy import Person
    from kernel.ids import SlackUserId


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="platform-bot", description="Slack front door of the internal developer platform."
    )
    parser.add_argument("--version", action="version", version=f"platform-bot {_version()}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve Slack (HTTP on $PORT, or Socket Mode) and run workers")
    check = sub.add_parser("check-config", help="validate platform.yml; exit 1 on any problem")
    check.add_argument("path", nargs="?", type=Path, help="default: $PLATFORM_CONFIG")
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("current", help="the schema's revision; exit 1 unless it is the head")
    db_sub.add_parser("history", help="every migration of this version, oldest first")
    db_sub.add_parser("upgrade", help="apply migrations to $DATABASE_URL")
    db_sub.add_parser(
        "downgrade", help="undo the newest applied migration (one step; back from a bad upgrade)"
    )
    templates = sub.add_parser("templates", help="golden-path templates")
    templates_sub = templates.add_subparsers(dest="templates_command", required=True)
    templates_check = templates_sub.add_parser(
        "check", help="render every template with sample values; exit 1 on any problem"
    )
    templates_check.add_argument(
        "--dir", type=Path, help="default: templates_dir of $PLATFORM_CONFIG"
    )
    policy = sub.add_parser("policy", help="approval policies")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    explain = policy_sub.add_parser(
        "explain", help="which approval rule applies to a change, and who may approve it"
    )
    explain.add_argument("action", help="the Action's kind, e.g. rollback")
    explain.add_argument("service")
    explain.add_argument("env")
    explain.add_argument("--as", dest="as_user", help="a Slack user id (U...) or e-mail")
    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_export = audit_sub.add_parser(
        "export", help="write entries as JSON lines (oldest first) to stdout, for a SIEM"
    )
    audit_export.add_argument("--since", required=True, help="ISO date or time, e.g. 2026-12-01")
    audit_export.add_argument("--until", help="ISO date or time (exclusive)")
    args = parser.parse_args(argv)

    try:
        from app.settings import Settings

        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            print(f"platform-bot: {str(error['loc'][0]).upper()}: {error['msg']}", file=sys.stderr)
        return 2

    command = args.command or "serve"
    if command == "check-config":
        return check_config(args.path or settings.platform_config, settings=settings)
    if command == "db":
        from app import db_commands

        run_db = {
            "current": db_commands.db_current,
            "history": db_commands.db_history,
            "upgrade": db_commands.db_upgrade,
            "downgrade": db_commands.db_downgrade,
        }[args.db_command]
        return run_db(settings.database_url)
    if command == "audit":
        from app.audit_export import export

        return export(settings.database_url, since=args.since, until=args.until)
    if command == "policy":
        return policy_explain(
            settings, action=args.action, service=args.service, env=args.env, user=args.as_user
        )
    if command == "templates":
        return check_templates(args.dir, config=settings.platform_config)
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("platform-bot")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def check_config(path: Path, *, settings: object | None = None) -> int:
    from catalog.load import ConfigError, load_platform_model

    try:
        model = load_platform_model(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"{path}: ok ({len(model.teams)} teams, {len(model.services)} services, "
        f"{len(model.environments)} environments, {len(model.approval_policies)} policies)"
    )
    from features.approvals.policy import rule_summary

    print("approvals a change needs (`platform-bot policy explain` tells why):")
    for line in rule_summary(model):
        print(f"  {line}")
    note = asyncio.run(_usergroups_note(settings, model)) if settings is not None else None
    if note:
        print(note)
    return 0


async def _usergroups_note(settings: object, model: PlatformModel) -> str | None:
    """What Slack says about user groups, with SLACK_BOT_TOKEN set: on a free plan there
    are none (``plan_upgrade_required``), so only the members listed in the file count."""
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    from app.settings import Settings

    assert isinstance(settings, Settings)
    if settings.slack_bot_token is None:
        return None
    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    try:
        await client.usergroups_list()
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error != "plan_upgrade_required":
            return f"Slack: user groups not checked ({error})"
        named = {g for p in model.approval_policies for g in p.approvers.usergroups}
        named |= {t.slack_usergroup for t in model.teams.values() if t.slack_usergroup}
        if model.platform.admins_usergroup:
            named.add(model.platform.admins_usergroup)
        return (
            "Slack: this workspace's plan has no user groups (plan_upgrade_required), so "
            "teams, admins and approvers are only the members listed in this file; "
            f"{len(named)} user group(s) named here match nobody."
        )
    except Exception as exc:  # a note, never a failed check
        return f"Slack: user groups not checked ({type(exc).__name__})"
    finally:
        if client.session is not None:
            await client.session.close()
    return None


def check_templates(directory: Path | None, *, config: Path) -> int:
    """Print each template with OK or its problems; 1 if any has a problem."""
    from catalog.load import ConfigError, load_platform_model
    from catalog.template_checks import check_template
    from catalog.templates import TemplateError, template_folders

    if directory is None:
        try:
            directory = Path(load_platform_model(config).templates_dir)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    try:
        folders = template_folders(directory)
    except TemplateError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not folders:
        print(f"{directory}: holds no templates", file=sys.stderr)
        return 1
    failed = 0
    for folder in folders:
        problems = check_template(folder)
        print(f"{folder.name}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  {problem}")
        failed += bool(problems)
    return 1 if failed else 0


def policy_explain(
    settings: object, *, action: str, service: str, env: str, user: str | None
) -> int:
    """Print which rule applies and whether `user` may approve; with SLACK_BOT_TOKEN set,
    also ask Slack about the policies' user groups (exit 1 if one is unknown)."""
    from app.settings import Settings
    from catalog import Catalog, UnknownName
    from catalog.load import ConfigError, load_platform_model
    from features.approvals.policy import Target, explain, unknown_usergroups

    assert isinstance(settings, Settings)
    try:
        catalog = Catalog(load_platform_model(settings.platform_config))
        owner = catalog.service(service).owner
        catalog.environment(env)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except UnknownName as exc:
        print(f"platform-bot: {exc}", file=sys.stderr)
        return 2
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    person, known = asyncio.run(_policy_facts(catalog, settings.slack_api_url, token, user))
    print(explain(catalog.model, Target(action, env, service, owner), person))
    if known is None:
        print("(Slack user groups not checked: set SLACK_BOT_TOKEN to check them)")
        return 0
    problems = unknown_usergroups(catalog.model, known)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


async def _policy_facts(
    catalog: Catalog, api_url: str, token: str | None, user: str | None
) -> tuple[Person | None, set[str] | None]:
    """(the Person `user` is, the user group ids Slack knows), asking Slack if `token`."""
    from slack_sdk.web.async_client import AsyncWebClient

    from engine.directory import SlackDirectory
    from features.approvals.people import person_of
    from kernel.ids import SlackUserId

    client = AsyncWebClient(token=token, base_url=api_url) if token else None
    directory = SlackDirectory(client) if client else _NoSlack()
    try:
        person = None
        if user:
            groups = {g for p in catalog.model.approval_policies for g in p.approvers.usergroups}
            person = await person_of(catalog, directory, SlackUserId(user), usergroups=groups)
        known = None
        if client is not None:
            answer = await client.usergroups_list()
            listed: list[dict[str, object]] = answer.get("usergroups", [])
            known = {str(group.get("id")) for group in listed}
        return person, known
    finally:
        if client is not None and client.session is not None:
            await client.session.close()


class _NoSlack:
    """The Directory when no Slack token is set: it knows no groups and no e-mails."""

    async def usergroup_members(self, usergroup_id: str) -> frozenset[SlackUserId]:
        return frozenset()

    async def email_of(self, user: SlackUserId) -> str | None:
        return None

    async def channel_name(self, channel_id: str) -> str | None:
        return None


def serve(settings: object) -> int:
    from app.bootstrap import StartupError, build_app
    from app.settings import Settings
    from catalog.load import ConfigError

    assert isinstance(settings, Settings)

    async def run() -> None:
        bot = build_app(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, bot.stop_event.set)
        await bot.serve_forever()

    try:
        asyncio.run(run())
    except (StartupError, ConfigError) as exc:
        print(f"platform-bot: {exc}", file=sys.stderr)
        return 2
    # Stopped cleanly: Runs handed back, connections closed, the database disposed.
    # Tearing the interpreter down (a final garbage collection over every module of the
    # SDKs) takes seconds more on a busy node, inside Kubernetes' grace period; there is
    # nothing left to finalise, so leave now (issue 10, item 12).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
