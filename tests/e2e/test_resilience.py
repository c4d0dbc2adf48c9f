"""Start-up failures, a database outage mid-flight, and Socket Mode."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, make_url, text

from kernel.actions import Action, Step, StepContext
from kernel.ids import SlackUserId
from sandbox.app.stack import sandbox_stack
from tests.conftest import POSTGRES_ADMIN_URL
from tests.harness import Chat


class Hold(Action):
    """A test Action whose one step waits until the test lets it go."""

    kind = "test.hold"
    service: str


class HoldExecutor:
    action_type = Hold

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.executions = 0

    def steps(self, action: Action) -> Sequence[Step]:
        async def hold(ctx: StepContext) -> dict[str, Any]:
            self.executions += 1
            self.started.set()
            await self.release.wait()
            return {"held": True}

        return [Step("hold", "Hold until released", hold)]


def _platform_bot(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_database_down_at_startup_is_a_clear_error(tmp_path: Path) -> None:
    result = _platform_bot(
        "serve",
        env={
            "DATABASE_URL": "postgresql://platform:secret@127.0.0.1:1/platform",
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "s",
            "PLATFORM_CONFIG": str(Path(__file__).parents[2] / "sandbox/app/sample/platform.yml"),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("platform-bot: Cannot reach the database at postgresql")
    assert "Check DATABASE_URL" in result.stderr
    assert "secret" not in result.stderr  # the password is hidden
    assert "Traceback" not in result.stderr


def test_config_typo_at_startup_lists_the_problem(tmp_path: Path) -> None:
    config = tmp_path / "platform.yml"
    config.write_text(
        "teams:\n  payments: {slack_channel: '#payments'}\n"
        "environments:\n  prod: {cluster: prod}\n"
        "services:\n  checkout: {owner: paymnts, environments: [prod]}\n"
    )
    result = _platform_bot(
        "serve",
        env={
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_SIGNING_SECRET": "s",
            "PLATFORM_CONFIG": str(config),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert (
        "line 6: services.checkout.owner: team 'paymnts' is not defined; "
        "did you mean 'payments'?" in result.stderr
    )
    assert "Traceback" not in result.stderr


async def test_database_outage_during_requests(postgres_url: str) -> None:
    """The user is told to try again; the Run in flight is not lost and finishes after."""
    name = make_url(postgres_url).database
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    executor = HoldExecutor()

    def set_connections(allowed: bool) -> None:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {allowed}'))
            if not allowed:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )

    try:
        async with sandbox_stack(database_url=postgres_url, executors=[executor]) as stack:
            chat = Chat(stack)
            submitted = await stack.bot.engine.submit(
                Hold(service="checkout"),
                requested_by=SlackUserId("U01ALICE"),
                idempotency_key="hold-1",
            )
            await asyncio.wait_for(executor.started.wait(), 5)

            await asyncio.to_thread(set_connections, False)
            seen = await chat.say("audit")
            assert seen.text.startswith("The platform's database is not answering right now")
            assert "Try again in a minute" in seen.text
            seen = await chat.say("whoami")  # needs no database: answered directly
            assert "`payments`" in seen.text
            base = stack.sender.events_url.removesuffix("/slack/events")
            async with aiohttp.ClientSession() as session, session.get(base + "/readyz") as r:
                assert r.status == 503

            await asyncio.to_thread(set_connections, True)
            executor.release.set()
            for _ in range(100):
                view = await stack.bot.engine.view(submitted.run_id)
                if view.state == "succeeded":
                    break
                await asyncio.sleep(0.05)
            assert view.state == "succeeded"
            assert executor.executions == 1
            seen = await chat.say("audit checkout")
            assert "run.succeeded" in seen.text
    finally:
        await asyncio.to_thread(set_connections, True)
        admin.dispose()


async def test_socket_mode_end_to_end(database_url: str) -> None:
    async with sandbox_stack(database_url=database_url, socket_mode=True) as stack:
        await stack.slack.wait_for_socket_connection(timeout=5)
        chat = Chat(stack)
        seen = await chat.say("help")
        assert seen.in_ack and "/platform whoami" in seen.text
        seen = await chat.say("whoami", as_user="bob")
        assert "`sre`" in seen.text
        assert stack.slack.calls_to("apps.connections.open")


async def test_socket_mode_serves_the_modal_menus_over_the_socket(database_url: str) -> None:
    """No options load URL in Socket Mode: block_suggestion and the template's
    block_actions arrive over the socket, and are answered there."""
    async with sandbox_stack(database_url=database_url, socket_mode=True) as stack:
        await stack.slack.wait_for_socket_connection(timeout=5)
        assert stack.slack.options_load_url is None
        seen = await Chat(stack).say("new-service")
        assert seen.text.startswith("Fill in the form"), seen.text
        (view_id,) = stack.slack.views
        teams = await stack.sender.block_suggestion(
            user="alice", action_id="new_service.team", value="s", view_id=view_id
        )
        assert teams.values == ["search", "sre", "payments"]  # "s…" first, then the rest
        paths = await stack.sender.block_suggestion(
            user="alice", action_id="new_service.template", value="fast", view_id=view_id
        )
        assert paths.values == ["python-fastapi"]
        await stack.sender.block_actions(
            user="alice",
            action_id="new_service.template",
            view_id=view_id,
            selected_option=paths.options[0],
        )
        assert (await stack.slack.wait_for("views.update")).ok
        blocks = [b["block_id"] for b in stack.slack.views[view_id].view["blocks"]]
        assert "param.python-fastapi.python_version" in blocks
