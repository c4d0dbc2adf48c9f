"""new-service benchmark: 20 services created back to back against the sandbox's stand-ins.

    .venv/bin/python bench/new_service.py [--services 20] [--json results.json]

The real bot runs on the sandbox stack (SQLite in a temp dir) with its real adapters
talking to the GitLab and Kubernetes stand-ins and to a real OpenBao dev server. Each
service is asked for by a signed `/platform new-service <template> <name> --team
payments` (the two templates in turn), and the next one only after the previous is done.

Printed per run: the time from the slash command to the Run's `succeeded` state in the
database, and to the moment Slack's progress message says *Done* (the outbox paces
messages at Slack's one per second per channel, so this is the longer one); and the API
calls one provisioning makes, counted where they arrive: the GitLab and Kubernetes
stand-ins' request logs and the Slack stand-in's recorded calls; Vault's at the HTTP layer
of the bot's hvac client (OpenBao refuses audit devices enabled through its API).
Exit status 0 when every service was provisioned, 1 if not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # run from a checkout even if the package is not installed

import requests.adapters  # noqa: E402
from sqlalchemy import select  # noqa: E402

from engine.db import RunRow  # noqa: E402
from sandbox.app.stack import SandboxStack, sandbox_stack  # noqa: E402

TEMPLATES = ("node-postgres", "python-fastapi")
TIMEOUT = 60.0


@dataclass
class Provisioning:
    """One service: how long it took and how many calls each system received."""

    service: str
    template: str
    run_seconds: float
    slack_done_seconds: float
    gitlab_calls: int
    kubernetes_calls: int
    vault_calls: int
    slack_calls: int


class Counters:
    """Request counts of every system, read before and after one provisioning."""

    def __init__(self, stack: SandboxStack) -> None:
        self.stack = stack
        self.vault = 0
        assert stack.vault_url is not None
        vault_url, send = stack.vault_url.rstrip("/"), requests.adapters.HTTPAdapter.send

        def counting_send(
            adapter: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kwargs: Any
        ) -> Any:
            if str(request.url).startswith(vault_url):
                self.vault += 1
            return send(adapter, request, *args, **kwargs)

        requests.adapters.HTTPAdapter.send = counting_send  # type: ignore[method-assign]

    def read(self) -> tuple[int, int, int, int]:
        return (
            len(self.stack.gitlab.requests),
            sum(len(c.requests) for c in self.stack.clusters.values()),
            self.vault,
            len(self.stack.slack.calls),
        )


async def run_state(stack: SandboxStack, service: str) -> str | None:
    return await stack.bot.db.run(
        lambda s: s.execute(
            select(RunRow.state).where(
                RunRow.service == service, RunRow.action_kind == "new-service"
            )
        ).scalar()
    )


def slack_says_done(stack: SandboxStack, service: str) -> bool:
    return any(
        m.text.startswith("*Done*") and f" {service} " in m.text
        for m in stack.slack.messages.get("C01PAYMENTS", [])
    )


async def provision(stack: SandboxStack, counters: Counters, number: int) -> Provisioning:
    template = TEMPLATES[number % len(TEMPLATES)]
    service = f"bench-{number:02d}"
    before = counters.read()
    started = time.perf_counter()
    response = await stack.sender.slash_command(
        f"new-service {template} {service} --team payments", user="alice", channel="#payments"
    )
    if response.status != 200:
        raise RuntimeError(f"{service}: the bot answered {response.status}")
    run_seconds = slack_seconds = None
    while time.perf_counter() - started < TIMEOUT:
        elapsed = time.perf_counter() - started
        if run_seconds is None:
            state = await run_state(stack, service)
            if state == "failed":
                raise RuntimeError(f"{service}: the Run failed")
            if state == "succeeded":
                run_seconds = elapsed
        if slack_seconds is None and slack_says_done(stack, service):
            slack_seconds = elapsed
        if run_seconds is not None and slack_seconds is not None:
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError(f"{service}: not done within {TIMEOUT:.0f} s")
    await asyncio.sleep(0.2)  # let stray progress updates land in this service's count
    after = counters.read()
    gitlab, kubernetes, vault, slack = (a - b for a, b in zip(after, before, strict=True))
    return Provisioning(
        service, template, run_seconds, slack_seconds, gitlab, kubernetes, vault, slack
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def table(results: list[Provisioning]) -> str:
    rows = [
        ("submission -> Run succeeded (s)", [r.run_seconds for r in results]),
        ("submission -> Slack shows Done (s)", [r.slack_done_seconds for r in results]),
        ("GitLab API calls", [float(r.gitlab_calls) for r in results]),
        ("Kubernetes API calls", [float(r.kubernetes_calls) for r in results]),
        ("Vault API calls", [float(r.vault_calls) for r in results]),
        ("Slack Web API calls", [float(r.slack_calls) for r in results]),
    ]
    lines = [f"{'per provisioning':<36} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}"]
    for label, values in rows:
        lines.append(
            f"{label:<36} {statistics.median(values):>8.2f} {percentile(values, 0.9):>8.2f} "
            f"{min(values):>8.2f} {max(values):>8.2f}"
        )
    return "\n".join(lines)


async def main(services: int, json_path: Path | None) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-new-service-"):
        async with sandbox_stack(vault=True) as stack:
            counters = Counters(stack)
            results = []
            try:
                for number in range(1, services + 1):
                    results.append(await provision(stack, counters, number))
            except RuntimeError as exc:
                print(f"bench/new_service.py: {exc}", file=sys.stderr)
                return 1
    print(f"{services} services created back to back ({', '.join(TEMPLATES)} in turn)\n")
    print(table(results))
    if json_path is not None:
        with json_path.open("w", encoding="utf-8") as out:
            json.dump([asdict(r) for r in results], out, indent=2)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seconds, not minutes: CI runs it so the bench never rots",
    )
    options = parser.parse_args()
    if options.quick:
        options.services = 1
    sys.exit(asyncio.run(main(options.services, options.json)))
