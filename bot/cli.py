"""`platform-bot`: serve, sandbox, check-config, db upgrade.

Every failure a person can fix ends in one clear line and a non-zero exit, never a
stack trace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bot.logs import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="platform-bot", description="Slack front door of the internal developer platform."
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve Slack (HTTP on $PORT, or Socket Mode) and run workers")
    check = sub.add_parser("check-config", help="validate platform.yml; exit 1 on any problem")
    check.add_argument("path", nargs="?", type=Path, help="default: $PLATFORM_CONFIG")
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations to $DATABASE_URL")
    sandbox = sub.add_parser(
        "sandbox", help="run the bot against local stand-ins and talk to it in a terminal"
    )
    sandbox.add_argument("--script", type=Path, help="play a transcript, exit 1 on any error")
    sandbox.add_argument("--as", dest="as_user", default="alice", help="start as this user")
    args = parser.parse_args(argv)

    try:
        from bot.settings import Settings

        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            print(f"platform-bot: {str(error['loc'][0]).upper()}: {error['msg']}", file=sys.stderr)
        return 2

    command = args.command or "serve"
    if command == "check-config":
        return check_config(args.path or settings.platform_config)
    if command == "db":
        return db_upgrade(settings.database_url)
    if command == "sandbox":
        from bot.sandbox import run_sandbox

        return run_sandbox(script=args.script, as_user=args.as_user)
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings)


def check_config(path: Path) -> int:
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
    return 0


def db_upgrade(url: str) -> int:
    from bot.bootstrap import StartupError, open_database
    from bot.migrate import current_revision

    try:
        db = open_database(url, auto_upgrade=True)
    except StartupError as exc:
        print(f"platform-bot: {exc}", file=sys.stderr)
        return 2
    print(f"database schema at revision {current_revision(db.engine)}")
    db.dispose()
    return 0


def serve(settings: object) -> int:
    from bot.bootstrap import StartupError, build_app
    from bot.settings import Settings
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
