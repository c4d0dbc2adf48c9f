"""Alert benchmark: alerts/s ingested and applied, and the slash-command ack under a storm.

    .venv/bin/python bench/alerts.py [--rounds 3] [--notifications 1000] [--seconds 5]
                                     [--backends sqlite,postgresql] [--json out.json]

For each backend (a SQLite file in a temp dir; a fresh PostgreSQL database on
PLATFORM_BOT_TEST_POSTGRES or 127.0.0.1:5432, dropped afterwards) the real bot runs on
the sandbox stack with its alert worker and outbox, and per round:

1. Ingest: `--notifications` Alertmanager notifications of 10 alerts each (200 groups)
   are POSTed to /alerts/alertmanager by a separate process over 16 connections.
   "ingested" = alerts/s answered 200 (stored durably); "applied" = alerts/s until the
   worker has applied them all to their groups.
2. Ack: `/platform help` is sent one at a time for `--seconds`, measuring each ack, once
   with no storm and once while a separate process posts a storm (order alternates
   round by round); p50 and p99 side by side.

Figures are medians over rounds. The machine is shared and noisy: compare the columns
of one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))  # run from a checkout even if not installed

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from features.alerts.tables import AlertNotificationRow  # noqa: E402
from sandbox.app.stack import ALERTMANAGER_WEBHOOK_TOKEN as TOKEN  # noqa: E402
from sandbox.app.stack import SandboxStack, sandbox_stack  # noqa: E402

ALERTS = 10
GROUPS = 200
POSTGRES_ADMIN = os.environ.get(
    "PLATFORM_BOT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def notification(index: int) -> dict[str, Any]:
    """The index-th notification: group index % GROUPS, its 10 alerts, some resolved."""
    group = index % GROUPS
    alerts = [
        {
            "status": "resolved" if (index // GROUPS + j) % 3 == 0 else "firing",
            "labels": {"alertname": f"Bench{group}", "service": "checkout", "pod": f"p{j}"},
            "annotations": {"summary": "benchmark"},
            "startsAt": "2026-11-27T08:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": f"{group:04d}{j:02d}",
        }
        for j in range(ALERTS)
    ]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="Bench{group}"}}',
        "status": "firing",
        "receiver": "bench",
        "groupLabels": {"alertname": f"Bench{group}"},
        "commonLabels": {"alertname": f"Bench{group}", "service": "checkout"},
        "commonAnnotations": {"summary": "benchmark"},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


async def post_storm(url: str, count: int, offset: int = 0, connections: int = 16) -> None:
    """POST `count` notifications over `connections` connections; fail on any non-200."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    queue = iter(range(offset, offset + count))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            for index in queue:
                body = json.dumps(notification(index))
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        raise SystemExit(
                            f"storm refused: {response.status} {await response.text()}"
                        )

        await asyncio.gather(*(worker() for _ in range(connections)))


def storm_process(url: str, count: int, offset: int) -> subprocess.Popen[bytes]:
    """The storm, from a separate process (so it does not share the bot's event loop)."""
    return subprocess.Popen(
        [sys.executable, __file__, "--storm", url, str(count), str(offset)],
        env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )


@contextmanager
def database(backend: str, scratch: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{scratch / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        return
    name = f"pbbench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@asynccontextmanager
async def bot(url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=url) as stack:
        yield stack


async def applied(stack: SandboxStack) -> int:
    return int(
        await stack.bot.db.run(
            lambda s: s.execute(
                select(func.count())
                .select_from(AlertNotificationRow)
                .where(AlertNotificationRow.state == "done")
            ).scalar_one()
        )
    )


async def drained(stack: SandboxStack) -> None:
    """Wait until the worker has applied every stored notification."""

    def pending(session: Any) -> int:
        return int(
            session.execute(
                select(func.count())
                .select_from(AlertNotificationRow)
                .where(AlertNotificationRow.state == "pending")
            ).scalar_one()
        )

    while await stack.bot.db.run(pending):  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.1)


async def ingest_round(stack: SandboxStack, count: int, offset: int) -> tuple[float, float]:
    """(alerts/s answered 200, alerts/s applied) for `count` notifications."""
    url = f"http://127.0.0.1:{stack.bot.port}/alerts/alertmanager"
    before = await applied(stack)
    started = time.perf_counter()
    process = storm_process(url, count, offset)
    if await asyncio.to_thread(process.wait) != 0:
        raise SystemExit("the storm process failed")
    ingested = time.perf_counter() - started
    while await applied(stack) < before + count:  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.05)
    done = time.perf_counter() - started
    return count * ALERTS / ingested, count * ALERTS / done


async def ack_latencies(stack: SandboxStack, seconds: float) -> list[float]:
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await stack.sender.slash_command("help", user="alice", channel="#platform")
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"/platform help answered {response.status}")
    return latencies


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


async def run_backend(backend: str, args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    rows: dict[str, list[float]] = {k: [] for k in ("ingested", "applied")}
    acks: dict[str, list[tuple[float, float]]] = {"quiet": [], "storm": []}
    with database(backend, scratch) as url:
        async with bot(url) as stack:
            offset = 0
            for round_ in range(args.rounds):
                ingested, done = await ingest_round(stack, args.notifications, offset)
                offset += args.notifications
                rows["ingested"].append(ingested)
                rows["applied"].append(done)
                order = ("quiet", "storm") if round_ % 2 == 0 else ("storm", "quiet")
                for mode in order:
                    storm = None
                    if mode == "storm":
                        url_ = f"http://127.0.0.1:{stack.bot.port}/alerts/alertmanager"
                        storm = storm_process(url_, args.notifications * 10, offset)
                        offset += args.notifications * 10
                        await asyncio.sleep(0.5)  # let it get going
                    latencies = await ack_latencies(stack, args.seconds)
                    if storm is not None:
                        storm.terminate()
                        storm.wait()
                        await drained(stack)
                    acks[mode].append((p(latencies, 50), p(latencies, 99)))
    return {
        "backend": backend,
        "alerts_per_s_ingested": statistics.median(rows["ingested"]),
        "alerts_per_s_applied": statistics.median(rows["applied"]),
        "ack_ms": {
            mode: {
                "p50": statistics.median(v[0] for v in values),
                "p99": statistics.median(v[1] for v in values),
            }
            for mode, values in acks.items()
        },
    }


async def main(args: argparse.Namespace) -> int:
    import logging
    import tempfile

    logging.basicConfig(level=logging.WARNING)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as scratch:
        for backend in args.backends.split(","):
            print(f"{backend}: {args.rounds} rounds ...", flush=True)
            results.append(await run_backend(backend, args, Path(scratch)))
    print()
    print(
        f"{'backend':<12}{'ingested/s':>12}{'applied/s':>12}"
        f"{'ack p50 quiet':>15}{'p50 storm':>11}{'ack p99 quiet':>15}{'p99 storm':>11}"
    )
    for r in results:
        quiet, storm = r["ack_ms"]["quiet"], r["ack_ms"]["storm"]
        print(
            f"{r['backend']:<12}{r['alerts_per_s_ingested']:>12.0f}{r['alerts_per_s_applied']:>12.0f}"
            f"{quiet['p50']:>13.1f}ms{storm['p50']:>9.1f}ms{quiet['p99']:>13.1f}ms{storm['p99']:>9.1f}ms"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))  # noqa: ASYNC240
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--storm":
        asyncio.run(post_storm(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        raise SystemExit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--json")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seconds, not minutes: CI runs it so the bench never rots",
    )
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.notifications, options.seconds = 1, 20, 0.5
    raise SystemExit(asyncio.run(main(options)))
