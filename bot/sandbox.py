"""The sandbox: the real bot, on SQLite, wired to local stand-ins instead of Slack & co.

`SandboxStack` starts the Slack stand-in and the bot (HTTP server, Run worker, outbox)
and gives a `SlackSender` that sends requests into the bot exactly as Slack would.
The terminal console (`bot.console`) and the tests both drive the bot through it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.bootstrap import PlatformBot, build_app
from bot.domain import Executor
from bot.settings import Settings
from sandbox.slack_api import SlackChannel, SlackStandIn, SlackUser, SlackUserGroup, Workspace
from sandbox.slack_client import SlackSender

SAMPLE_CONFIG = Path(__file__).parent / "sample" / "platform.yml"
SIGNING_SECRET = "sandbox-signing-secret"  # noqa: S105 - a local stand-in's, not a secret

SANDBOX_WORKSPACE = Workspace(
    team_id="T0SANDBOX",
    team_name="Sandbox",
    bot_token="xoxb-sandbox-bot-token",  # noqa: S106
    app_token="xapp-sandbox-app-token",  # noqa: S106
    bot_user_id="U0PLATFORMBOT",
    users=(
        SlackUser("U01ALICE", "alice", "Alice Payments", "alice@example.com"),
        SlackUser("U02BOB", "bob", "Bob SRE", "bob@example.com"),
        SlackUser("U03CAROL", "carol", "Carol Search", "carol@example.com"),
        SlackUser("U04DAVE", "dave", "Dave Platform", "dave@example.com"),
        SlackUser("U05ERIN", "erin", "Erin Newcomer", "erin@example.com"),
    ),
    usergroups=(
        SlackUserGroup("S01PAYMENTS", "payments-team", "Payments", ("U01ALICE",)),
        SlackUserGroup("S02SRE", "sre", "SRE on call", ("U02BOB",)),
        SlackUserGroup("S03PLATFORM", "platform-admins", "Platform admins", ("U04DAVE",)),
    ),
    channels=(
        SlackChannel("C01PAYMENTS", "payments"),
        SlackChannel("C02SEARCH", "search"),
        SlackChannel("C03PLATFORM", "platform"),
        SlackChannel("C04AUDIT", "platform-audit"),
    ),
)
"""People who match the sample platform.yml: alice (payments), bob (SRE approver),
carol (search, listed by e-mail), dave (platform admin), erin (in no team)."""


@dataclass
class SandboxStack:
    """A running bot plus the stand-ins it talks to."""

    slack: SlackStandIn
    bot: PlatformBot
    sender: SlackSender

    @property
    def workspace(self) -> Workspace:
        return self.slack.workspace


@contextlib.asynccontextmanager
async def sandbox_stack(
    *,
    database_url: str | None = None,
    config: Path = SAMPLE_CONFIG,
    executors: Iterable[Executor] = (),
    workspace: Workspace = SANDBOX_WORKSPACE,
    socket_mode: bool = False,
) -> AsyncIterator[SandboxStack]:
    """Start the stand-ins and the bot on loopback; stop everything on exit."""
    with tempfile.TemporaryDirectory(prefix="platform-bot-sandbox-") as scratch:
        slack = SlackStandIn(workspace)
        await slack.start()
        try:
            settings = Settings(
                slack_bot_token=workspace.bot_token,
                slack_signing_secret=SIGNING_SECRET,
                slack_app_token=workspace.app_token if socket_mode else None,
                slack_api_url=slack.api_url,
                database_url=database_url or f"sqlite:///{Path(scratch) / 'sandbox.db'}",
                platform_config=config,
                host="127.0.0.1",
                port=0,
                worker_id="sandbox",
            )
            bot = build_app(settings, executors=executors, auto_upgrade=True)
            await bot.start()
            sender = SlackSender(
                events_url=f"http://127.0.0.1:{bot.port}/slack/events",
                signing_secret=SIGNING_SECRET,
                workspace=workspace,
                standin=slack,
                socket_mode=socket_mode,
            )
            try:
                yield SandboxStack(slack=slack, bot=bot, sender=sender)
            finally:
                await sender.close()
                await bot.stop()
        finally:
            await slack.stop()


def run_sandbox(*, script: Path | None, as_user: str) -> int:
    """`platform-bot sandbox`: the console on a sandbox stack (see bot.console)."""
    from bot.console import run_console

    return run_console(script=script, as_user=as_user)
