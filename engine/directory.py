"""Who people are, asked of Slack: user-group members, e-mail addresses and channel
names, cached.

Role checks happen when someone clicks, so answers may be at most `ttl` old (60 s):
someone removed from a group loses their rights within a minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from kernel.ids import SlackUserId


class SlackDirectory:
    """`Directory` on the Slack Web API (usergroups.users.list, users.info,
    conversations.info)."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        ttl: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.ttl, self.clock = client, ttl, clock
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    async def usergroup_members(self, usergroup_id: str) -> frozenset[SlackUserId]:
        async def fetch() -> frozenset[SlackUserId]:
            try:
                response = await self.client.usergroups_users_list(usergroup=usergroup_id)
            except SlackApiError as exc:
                if exc.response.get("error") == "no_such_subteam":
                    return frozenset()
                raise
            users: list[str] = response.get("users", [])
            return frozenset(SlackUserId(u) for u in users)

        result: frozenset[SlackUserId] = await self._cached("group", usergroup_id, fetch)
        return result

    async def email_of(self, user: SlackUserId) -> str | None:
        async def fetch() -> str | None:
            try:
                response = await self.client.users_info(user=user)
            except SlackApiError as exc:
                if exc.response.get("error") == "user_not_found":
                    return None
                raise
            profile = (response.get("user") or {}).get("profile") or {}
            email = profile.get("email")
            return str(email) if email else None

        result: str | None = await self._cached("email", user, fetch)
        return result

    async def channel_name(self, channel_id: str) -> str | None:
        async def fetch() -> str | None:
            try:
                response = await self.client.conversations_info(channel=channel_id)
            except SlackApiError:
                return None
            name = (response.get("channel") or {}).get("name")
            return str(name) if name else None

        result: str | None = await self._cached("channel", channel_id, fetch)
        return result

    async def _cached(self, kind: str, key: str, fetch: Callable[[], Any]) -> Any:
        now = self.clock()
        hit = self._cache.get((kind, key))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        value = await fetch()
        self._cache[(kind, key)] = (now, value)
        return value
