"""Rollback benchmark: from the approval click to the rollback's first API call, and API
calls per rollback, on the sandbox stack's stand-ins (Kubernetes and Argo CD).

    .venv/bin/python bench/rollback.py [--rounds 7] [--json results.json]

Each round, on a fresh-enough state (every rollback goes back to the previous revision,
so rounds alternate between two images):

1. alice types `/platform rollback checkout prod` (Kubernetes) or `... prod-eu` (Argo CD)
   as a signed Slack request; the Run waits for approval;
2. bob (prod) or dave (prod-eu) clicks Approve on the card, as a signed Slack request;
3. we time, from just before the click is sent:
   - `first call`: the first request the stand-in sees after the click (the approval's
     stale check reads the live state before the Run is released);
   - `change call`: the request that changes something (Kubernetes: the PATCH of the
     Deployment; Argo CD: POST .../rollback);
   - `done`: the Run's progress message saying Done (includes the rollout itself,
     `rollout_seconds`/`sync_seconds` = 0.1 s on the stand-ins, and the watch's polling);
4. we count the stand-in's requests from the command to Done, by method.

Figures are the median over rounds (and the min and max). The stand-ins, the bot, its
database (SQLite in a temp dir) and the Slack stand-in share one process and event loop,
so absolute times are those of a loaded laptop, not of production.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.harness import Chat

PAYMENTS = "C01PAYMENTS"


@dataclass(frozen=True)
class Place:
    """Where a round rolls back: the environment, who approves, the stand-in's requests."""

    env: str
    approver: str
    backend: str


PLACES = (Place("prod", "bob", "kubernetes"), Place("prod-eu", "dave", "argocd"))


@dataclass
class Round:
    first_call_ms: float
    change_call_ms: float
    done_ms: float
    calls: dict[str, int]


def requests_of(stack: SandboxStack, place: Place) -> list[Any]:
    if place.backend == "argocd":
        return list(stack.argocd.requests)
    return list(stack.clusters["sandbox-prod"].requests)


def is_change(place: Place, request: Any) -> bool:
    if place.backend == "argocd":
        return bool(request.method == "POST" and request.path.endswith("/rollback"))
    return bool(request.method == "PATCH" and "/deployments/" in request.path)


async def until(check: Any, *, within: float = 30.0, every: float = 0.001) -> None:
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 - polling what the stand-ins recorded
            await asyncio.sleep(every)


async def one_round(stack: SandboxStack, chat: Chat, place: Place) -> Round:
    known = {m.ts for m in stack.slack.messages.get(PAYMENTS, [])}
    mark = len(requests_of(stack, place))
    seen = await chat.say(f"/platform rollback checkout {place.env}", as_user="alice")
    if not seen.text.startswith("*Waiting for approval*"):
        raise SystemExit(f"the rollback was not proposed: {seen.text}")
    card = None

    def card_ready() -> bool:
        nonlocal card
        for message in stack.slack.messages.get(PAYMENTS, []):
            if message.ts not in known and message.text.startswith(":lock: *Approval needed*"):
                card = message
        return card is not None

    await until(card_ready)
    assert card is not None
    before_click = len(requests_of(stack, place))
    clicked = time.perf_counter()
    first: float | None = None
    change: float | None = None

    def watch() -> bool:
        nonlocal first, change
        new = requests_of(stack, place)[before_click:]
        now = time.perf_counter()
        if new and first is None:
            first = now
        if change is None and any(is_change(place, r) for r in new):
            change = now
        return change is not None

    click = asyncio.create_task(
        stack.sender.block_actions(
            user=place.approver,
            action_id="approval.approve",
            channel=PAYMENTS,
            message_ts=card.ts,
        )
    )
    await until(watch)
    await click
    await until(  # this Run's progress message (new since the round began) says Done
        lambda: any(
            m.ts not in known and m.text.startswith("*Done*")
            for m in stack.slack.messages.get(PAYMENTS, [])
        ),
        every=0.01,
    )
    done = time.perf_counter()
    assert first is not None and change is not None
    calls = Counter(r.method for r in requests_of(stack, place)[mark:])
    return Round(
        first_call_ms=(first - clicked) * 1000,
        change_call_ms=(change - clicked) * 1000,
        done_ms=(done - clicked) * 1000,
        calls=dict(calls),
    )


def summary(rounds: list[Round]) -> dict[str, Any]:
    def spread(values: list[float]) -> dict[str, float]:
        return {
            "median": round(statistics.median(values), 1),
            "min": round(min(values), 1),
            "max": round(max(values), 1),
        }

    totals = [sum(r.calls.values()) for r in rounds]
    methods = sorted({m for r in rounds for m in r.calls})
    return {
        "rounds": len(rounds),
        "click_to_first_call_ms": spread([r.first_call_ms for r in rounds]),
        "click_to_change_call_ms": spread([r.change_call_ms for r in rounds]),
        "click_to_done_ms": spread([r.done_ms for r in rounds]),
        "api_calls_per_rollback": spread([float(t) for t in totals]),
        "api_calls_by_method_median": {
            m: statistics.median(r.calls.get(m, 0) for r in rounds) for m in methods
        },
    }


async def bench(rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with sandbox_stack(rollout_seconds=0.1) as stack:
        stack.argocd.sync_seconds = 0.1
        chat = Chat(stack)
        for place in PLACES:
            measured = [await one_round(stack, chat, place) for _ in range(rounds)]
            results[f"{place.backend} ({place.env})"] = summary(measured)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seconds, not minutes: CI runs it so the bench never rots",
    )
    options = parser.parse_args()
    if options.quick:
        options.rounds = 1
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    results = asyncio.run(bench(options.rounds))
    for name, figures in results.items():
        print(f"{name}, {figures['rounds']} rounds (median [min, max]):")
        for key in (
            "click_to_first_call_ms",
            "click_to_change_call_ms",
            "click_to_done_ms",
            "api_calls_per_rollback",
        ):
            f = figures[key]
            print(f"  {key:28} {f['median']:8} [{f['min']}, {f['max']}]")
        print(f"  {'by method (median)':28} {figures['api_calls_by_method_median']}")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
