"""Slack's per-method rate limit tiers, as the Slack stand-in enforces them.

Slack evaluates Web API calls "per API method per app per workspace", each method in one
of four tiers counted per minute, plus a "special" tier for methods with their own rule
(https://docs.slack.dev/apis/web-api/rate-limits, formerly
https://api.slack.com/docs/rate-limits; the tiers were introduced in
https://api.slack.com/changelog/2018-03-great-rate-limits):

- Tier 1: 1+ per minute, "a small amount of burst behavior is tolerated";
- Tier 2: 20+ per minute, "occasional bursts of more requests";
- Tier 3: 50+ per minute, "sporadic bursts are welcome";
- Tier 4: 100+ per minute, "generous burst behavior";
- Special: e.g. chat.postMessage, about one message per second per channel (kept by the
  stand-in's per-channel pacing, not here).

Past its budget a method answers HTTP 429, ``{"ok": false, "error": "ratelimited"}`` and
a ``Retry-After`` header with whole seconds to wait (same page, "Responding to rate
limiting conditions").

Each method's tier is the one its reference page shows under "Rate limits"
(https://docs.slack.dev/reference/methods/<method>); the table below names it per
method. The budget is modelled as a token bucket per method: it refills at the tier's
per-minute rate and holds one minute's worth, so a burst up to the tier's count passes
and then calls are paced. Slack publishes floors ("20+"), not exact ceilings; using the
floor makes the stand-in the strictest honest Slack ("assumed": the exact bucket shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Tier = Literal[1, 2, 3, 4, "special"]

PER_MINUTE: dict[Tier, float] = {1: 1.0, 2: 20.0, 3: 50.0, 4: 100.0}
"""Calls a minute each numbered tier allows at least (the stand-in allows exactly that)."""

METHOD_TIERS: dict[str, Tier] = {
    # https://docs.slack.dev/reference/methods/auth.test ("Special": very high limits,
    # not per-minute tiered; the stand-in leaves it unmetered)
    "auth.test": "special",
    # https://docs.slack.dev/reference/methods/apps.connections.open (Tier 1)
    "apps.connections.open": 1,
    # https://docs.slack.dev/reference/methods/chat.postMessage ("Special": 1 per second
    # per channel, short bursts; the stand-in's per-channel bucket)
    "chat.postMessage": "special",
    # https://docs.slack.dev/reference/methods/chat.update (Tier 3)
    "chat.update": 3,
    # https://docs.slack.dev/reference/methods/chat.postEphemeral (Tier 4)
    "chat.postEphemeral": 4,
    # https://docs.slack.dev/reference/methods/chat.getPermalink ("Special", generous)
    "chat.getPermalink": "special",
    # https://docs.slack.dev/reference/methods/views.open, views.update, views.push (Tier 4)
    "views.open": 4,
    "views.update": 4,
    "views.push": 4,
    # https://docs.slack.dev/reference/methods/usergroups.list (Tier 2)
    "usergroups.list": 2,
    # https://docs.slack.dev/reference/methods/usergroups.users.list (Tier 2)
    "usergroups.users.list": 2,
    # https://docs.slack.dev/reference/methods/users.info (Tier 4)
    "users.info": 4,
    # https://docs.slack.dev/reference/methods/users.lookupByEmail (Tier 3)
    "users.lookupByEmail": 3,
    # https://docs.slack.dev/reference/methods/conversations.info (Tier 3)
    "conversations.info": 3,
}


@dataclass
class _MethodBucket:
    tokens: float
    updated: float


class MethodLimits:
    """One token bucket per tiered method: ``take`` spends a call or says how long to wait."""

    def __init__(self, tiers: dict[str, Tier] | None = None, *, scale: float = 1.0) -> None:
        """``scale`` multiplies every budget (tests of the bot's pacing may speed it up)."""
        self.tiers = dict(METHOD_TIERS if tiers is None else tiers)
        self.scale = scale
        self._buckets: dict[str, _MethodBucket] = {}
        self.refused: dict[str, int] = {}

    def budget(self, method: str) -> float | None:
        """Calls a minute ``method`` may make; None when no tier meters it."""
        tier = self.tiers.get(method)
        if tier is None or tier == "special":
            return None
        return PER_MINUTE[tier] * self.scale

    def take(self, method: str, now: float) -> int | None:
        """Spend one call of ``method``'s budget; None if allowed, else Retry-After seconds."""
        per_minute = self.budget(method)
        if per_minute is None:
            return None
        rate = per_minute / 60.0
        bucket = self._buckets.setdefault(method, _MethodBucket(per_minute, now))
        bucket.tokens = min(per_minute, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        self.refused[method] = self.refused.get(method, 0) + 1
        return max(1, math.ceil((1 - bucket.tokens) / rate))
