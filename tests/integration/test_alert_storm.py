"""An alert storm against Slack's real per-channel rate limit: nothing lost, nothing over.

The storm of the issue: 2,000 alerts in 200 groups over 20 seconds across 5 channels,
with Slack allowing about one message a second per channel (429 + Retry-After past
that). Time is compressed by SCALE so the test fits CI: the storm lasts 20/SCALE
seconds and the Slack stand-in (and the bot's deliverer) allow SCALE messages a second
per channel, so the ratio of alert changes to Slack messages is the real one. The
coalescing window shrinks by the same factor. Alertmanager's side is simulated as it
behaves with `group_interval` 5 s (its default is 5 minutes): every group whose alerts
changed sends its whole current state once per interval (each alert fires at some
tick; half resolve later).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from app.bootstrap import PlatformBot, build_app
from app.settings import Settings
from engine.db import OutboxRow
from features.alerts.tables import AlertGroupRow, AlertNotificationRow
from sandbox.app.stack import SANDBOX_WORKSPACE, SIGNING_SECRET
from sandbox.standins.slack_api import RecordedCall, SlackChannel, SlackStandIn
from sandbox.standins.slack_limits import MethodLimits

SCALE = 10
"""Time compression: 1 real second of the storm is 1/SCALE s here; Slack allows SCALE/s."""
CHANNELS = 5
GROUPS = 200
ALERTS_PER_GROUP = 10
STORM_SECONDS = 20
GROUP_INTERVAL = 5.0
TICKS = int(STORM_SECONDS / GROUP_INTERVAL)
SLACK_BURST = 3
TOKEN = "storm-token"

WORKSPACE = dataclasses.replace(
    SANDBOX_WORKSPACE,
    channels=tuple(SlackChannel(f"C0STORM{c}", f"storm-{c}") for c in range(CHANNELS)),
)


def platform_yml(path: Path) -> Path:
    teams = {f"team-{c}": {"slack_channel": f"#storm-{c}"} for c in range(CHANNELS)}
    services = {
        f"svc-{c}": {"owner": f"team-{c}", "environments": ["prod"]} for c in range(CHANNELS)
    }
    config = {
        "platform": {"fallback_channel": "#storm-0"},
        "teams": teams,
        "environments": {"prod": {"cluster": "storm"}},
        "services": services,
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def group_state(group: int, tick: int) -> dict[str, Any] | None:
    """Alertmanager's notification for `group` at `tick`, or None if nothing changed.

    Alert j fires at tick (group + j) % TICKS; even ones resolve 2 ticks later.
    """
    service = f"svc-{group % CHANNELS}"
    alerts, changed = [], False
    for j in range(ALERTS_PER_GROUP):
        fires, resolves = _fires(group, j), _resolves(group, j)
        if tick < fires:
            continue
        resolved = resolves is not None and tick >= resolves
        changed |= tick in (fires, resolves)
        alerts.append(
            {
                "status": "resolved" if resolved else "firing",
                "labels": {
                    "alertname": f"Storm{group}",
                    "service": service,
                    "instance": f"pod-{j}",
                },
                "annotations": {"summary": "storm"},
                "startsAt": f"2026-11-27T08:00:{fires:02d}Z",
                "endsAt": f"2026-11-27T08:01:{resolves:02d}Z"
                if resolved and resolves is not None
                else "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": f"{group:04d}{j:02d}",
            }
        )
    if not changed:
        return None
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="Storm{group}"}}',
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "receiver": "platform-bot",
        "groupLabels": {"alertname": f"Storm{group}"},
        "commonLabels": {"alertname": f"Storm{group}", "service": service},
        "commonAnnotations": {"summary": "storm"},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def _fires(group: int, j: int) -> int:
    return (group + j) % TICKS


def _resolves(group: int, j: int) -> int | None:
    """Even alerts resolve 2 ticks after they fire, if that is still within the storm."""
    tick = _fires(group, j) + 2
    return tick if j % 2 == 0 and tick < TICKS else None


def expected_counts(group: int) -> tuple[int, int]:
    """(firing, resolved) of `group` once the storm is over."""
    resolved = sum(1 for j in range(ALERTS_PER_GROUP) if _resolves(group, j) is not None)
    return ALERTS_PER_GROUP - resolved, resolved


@pytest.fixture
async def storm_bot(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[PlatformBot, SlackStandIn]]:
    slack = SlackStandIn(
        WORKSPACE,
        channel_rate_per_s=SCALE,
        channel_burst=SLACK_BURST,
        method_limits=MethodLimits(scale=SCALE),  # the method tiers, compressed alike
    )
    await slack.start()
    settings = Settings(
        slack_bot_token=WORKSPACE.bot_token,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=slack.api_url,
        database_url=database_url,
        platform_config=platform_yml(tmp_path / "platform.yml"),
        host="127.0.0.1",
        port=0,
        worker_id="storm",
        alertmanager_webhook_token=TOKEN,
    )
    bot = build_app(settings, auto_upgrade=True)
    bot.deliverer.rate = SCALE  # Slack's 1 message/s/channel, compressed like the storm
    bot.alerts.groups.window = bot.alerts.groups.window / SCALE
    await bot.start()
    try:
        yield bot, slack
    finally:
        await bot.stop()
        await slack.stop()


async def test_a_storm_is_coalesced_within_the_rate_limit_and_nothing_is_lost(
    storm_bot: tuple[PlatformBot, SlackStandIn],
) -> None:
    bot, slack = storm_bot
    slack.fail_next("chat.postMessage", status=429, retry_after=1, times=2)
    url = f"http://127.0.0.1:{bot.port}/alerts/alertmanager"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    started = time.monotonic()
    sent = 0
    async with aiohttp.ClientSession() as session:

        async def deliver(body: dict[str, Any]) -> None:
            async with session.post(url, data=json.dumps(body), headers=headers) as response:
                assert response.status == 200, await response.text()

        for tick in range(TICKS):
            due = started + tick * GROUP_INTERVAL / SCALE
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            bodies = [b for g in range(GROUPS) if (b := group_state(g, tick)) is not None]
            await asyncio.gather(*(deliver(b) for b in bodies))
            sent += len(bodies)
    storm_took = time.monotonic() - started

    await _drained(bot, timeout=45)

    # Counts on every parent are exactly right, one parent per group.
    parents = {
        m.text.split("] ", 1)[1].split()[0]: m
        for c in range(CHANNELS)
        for m in slack.messages.get(f"C0STORM{c}", [])
        if m.thread_ts is None
    }
    assert len(parents) == GROUPS
    for group in range(GROUPS):
        firing, resolved = expected_counts(group)
        parent = parents[f"Storm{group}"]
        shown = json.dumps(parent.blocks)
        assert parent.text.startswith(f"[FIRING:{firing}]"), (group, parent.text)
        assert f"*Firing:* {firing}" in shown and f"*Resolved:* {resolved}" in shown
        # Nothing lost: every alert was told in the thread, every resolution too.
        told = "\n".join(m.text for m in slack.thread(parent.channel, parent.ts)[1:])
        for j in range(ALERTS_PER_GROUP):
            assert f"instance=pod-{j}" in told, (group, j)
        assert told.count("Resolved") == resolved

    # No channel above the limit; the injected 429s were honoured.
    calls = [c for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert slack.rate_limited_count == 0
    for channel, times in _times_by_channel(slack, calls).items():
        most = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
        assert most <= SCALE + SLACK_BURST, (channel, most)
    refused = [c for c in calls if c.status == 429]
    assert len(refused) == 2
    for refusal in refused:
        channel = _channel(slack, refusal)
        later = [
            c.at
            for c in calls
            if c.at > refusal.at
            and c.method == "chat.postMessage"
            and _channel(slack, c) == channel
        ]
        assert not later or min(later) - refusal.at >= 0.95, "a Retry-After was not honoured"

    posts = Counter((_channel(slack, c), c.method) for c in calls if c.ok)
    print(
        f"\nstorm: {sent} notifications in {storm_took:.1f} s (scale {SCALE}); "
        f"Slack messages per channel: {dict(posts)}"
    )


async def _drained(bot: PlatformBot, *, timeout: float) -> None:  # noqa: ASYNC109
    """Wait until every notification is applied, every reply told and every message sent."""

    def backlog(session: Any) -> int:
        return int(
            session.execute(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.state != "sent")
            ).scalar_one()
            + session.execute(
                select(func.count())
                .select_from(AlertNotificationRow)
                .where(AlertNotificationRow.state != "done")
            ).scalar_one()
            + session.execute(
                select(func.count())
                .select_from(AlertGroupRow)
                .where(AlertGroupRow.reply_due_at.is_not(None))
            ).scalar_one()
        )

    deadline = time.monotonic() + timeout
    while (left := await bot.db.run(backlog)) > 0:
        if time.monotonic() > deadline:
            states = await bot.db.run(_states)
            raise AssertionError(f"{left} items still waiting after {timeout} s: {states}")
        await asyncio.sleep(0.2)


def _channel(slack: SlackStandIn, call: RecordedCall) -> str:
    return slack.workspace.channel(str(call.args.get("channel"))).id


def _times_by_channel(slack: SlackStandIn, calls: list[RecordedCall]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for call in calls:
        if call.ok:
            found.setdefault(_channel(slack, call), []).append(call.at)
    return found


def _states(session: Any) -> list[Any]:
    """What is still waiting, by table and state (for the failure message)."""
    return [
        *session.execute(
            select(OutboxRow.method, OutboxRow.state, func.count()).group_by(
                OutboxRow.method, OutboxRow.state
            )
        ).all(),
        *session.execute(
            select(AlertNotificationRow.state, func.count()).group_by(AlertNotificationRow.state)
        ).all(),
    ]
