"""Who people are: Slack user-group members from the database, e-mail addresses and
channel names from Slack, cached.

Role checks happen when someone clicks, and must never wait on Slack for every team:
`usergroups.list` / `usergroups.users.list` are Tier 2 (about 20 calls a minute) and a
call takes 100-500 ms. So group membership is read from the `slack_usergroup_members`
table (engine.directory_tables), which

- one `usergroups.list(include_users=true)` call fills (the first time it is needed, and
  then every `refresh_interval` by `refresh_loop`: one Tier 2 call per interval, shared
  by every replica through the table's timestamp);
- the `subteam_members_changed` and `subteam_updated` events keep current, without any
  call to Slack (`apply_event`), so someone removed from a group loses their rights as
  soon as Slack tells us.

Each replica keeps the table in memory for `reload_interval` seconds (one query, then
none), so a click costs no Slack call once the table is filled, and at most one (the fill)
on a cold start, whatever the number of teams.

A free workspace has no user groups (``plan_upgrade_required``): the directory then knows
none, role checks use the catalog's listed members, and `platform-bot check-config` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from engine import directory_tables as tables
from engine.db import Database, DatabaseUnavailable, utcnow
from kernel.errors import TryAgainLater
from kernel.ids import SlackUserId

log = logging.getLogger(__name__)

NO_GROUPS_ERRORS = frozenset({"plan_upgrade_required"})
"""Slack's answers that mean the workspace has no user groups at all."""
REFRESH_INTERVAL = 300.0
"""Seconds between full reads of the groups: one Tier 2 call each (budget: 20 a minute)."""
RELOAD_INTERVAL = 5.0
"""Seconds a replica trusts its in-memory copy of the table (events on other replicas)."""


class SlackDirectory:
    """`Directory` on the database (user groups) and the Slack Web API (users.info,
    conversations.info)."""

    def __init__(
        self,
        client: AsyncWebClient,
        db: Database | None = None,
        *,
        ttl: float = 60.0,
        refresh_interval: float = REFRESH_INTERVAL,
        reload_interval: float = RELOAD_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.db, self.ttl, self.clock = client, db, ttl, clock
        self.refresh_interval, self.reload_interval = refresh_interval, reload_interval
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}
        self._snapshot: tables.Snapshot | None = None
        self._loaded_at = float("-inf")
        self._sync_lock = asyncio.Lock()
        self._memory = tables.Snapshot(members={}, refreshed_at=None, unavailable=None)
        """Without a database (`platform-bot policy explain`), the groups live here."""

    # -- user groups (the database) ----------------------------------------------------

    async def usergroup_members(self, usergroup_id: str) -> frozenset[SlackUserId]:
        snapshot = await self.snapshot()
        return frozenset(SlackUserId(u) for u in snapshot.members.get(usergroup_id, ()))

    async def unavailable(self) -> str | None:
        """Why Slack has no user groups for us (``plan_upgrade_required``), or None."""
        return (await self.snapshot()).unavailable

    async def snapshot(self) -> tables.Snapshot:
        """The groups as the database has them; filled from Slack once if never read."""
        if self._snapshot is not None and self.clock() - self._loaded_at < self.reload_interval:
            return self._snapshot
        async with self._sync_lock:
            if self._snapshot is not None and self.clock() - self._loaded_at < self.reload_interval:
                return self._snapshot
            snapshot = await self._load()
            if not snapshot.synced:
                try:
                    await self._sync()
                except TryAgainLater:
                    self._snapshot = None  # not "nobody is in any group": ask again next time
                    raise
                snapshot = await self._load()
            return snapshot

    def drop_memory(self) -> None:
        """Forget the in-memory copy: the next read goes to the database."""
        self._snapshot = None

    async def refresh(self, *, force: bool = False) -> bool:
        """Read every group from Slack (one call) unless another replica just did.

        True if Slack was asked. Failures are logged; the table keeps what it had.
        """
        async with self._sync_lock:
            snapshot = await self._load()
            age = utcnow() - snapshot.refreshed_at if snapshot.refreshed_at else None
            if not force and age is not None and age < timedelta(seconds=self.refresh_interval):
                return False
            try:
                await self._sync()
            except TryAgainLater as exc:
                log.warning("user groups not refreshed: %s", exc)
            await self._load()
            return True

    async def refresh_loop(self, stop: asyncio.Event) -> None:
        """Keep the table fresh: one `usergroups.list` per `refresh_interval`."""
        while not stop.is_set():
            try:
                await self.refresh()
            except DatabaseUnavailable:
                log.warning("user groups not refreshed: database unavailable")
            except Exception:
                log.exception("user-group refresh failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.refresh_interval)

    async def apply_event(self, event: Mapping[str, Any]) -> bool:
        """Apply a `subteam_members_changed` or `subteam_updated` event; no Slack call.

        True if the event changed what the directory knows.
        https://docs.slack.dev/reference/events/subteam_members_changed (``subteam_id``,
        ``added_users``, ``removed_users``) and .../subteam_updated (``subteam`` with its
        ``users``; ``date_delete`` set when the group is disabled).
        """
        db = self.db
        if db is None:
            return False
        kind = event.get("type")
        if kind == "subteam_members_changed":
            group = event.get("subteam_id")
            if not isinstance(group, str) or not group:
                return False
            added = _user_ids(event.get("added_users"))
            removed = _user_ids(event.get("removed_users"))
            await db.run(partial(tables.change_members, group=group, added=added, removed=removed))
        elif kind == "subteam_updated":
            subteam = event.get("subteam")
            if not isinstance(subteam, dict) or not isinstance(subteam.get("id"), str):
                return False
            if "users" not in subteam and not subteam.get("date_delete"):
                return False  # nothing about members; the next refresh reads them
            users = [] if subteam.get("date_delete") else _user_ids(subteam.get("users"))
            await db.run(partial(tables.replace_group, group=subteam["id"], users=users))
        else:
            return False
        async with self._sync_lock:
            await self._load()
        return True

    async def _sync(self) -> None:
        """One `usergroups.list(include_users=true)`: every enabled group and its members."""
        db = self.db
        try:
            response = await self.client.usergroups_list(include_users=True)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            if error in NO_GROUPS_ERRORS:
                log.warning("Slack has no user groups for us (%s): catalog members only", error)
                if db is None:
                    self._memory = tables.Snapshot(members={}, refreshed_at=None, unavailable=error)
                else:
                    await db.run(partial(tables.mark_unavailable, error=error))
                return
            raise TryAgainLater(f"Slack did not list the user groups ({error})") from exc
        except (SlackClientError, OSError, TimeoutError) as exc:
            raise TryAgainLater(f"Slack could not be reached for the user groups: {exc}") from exc
        groups: dict[str, list[str]] = {}
        for group in response.get("usergroups") or []:
            if isinstance(group, dict) and isinstance(group.get("id"), str):
                groups[group["id"]] = _user_ids(group.get("users"))
        if db is None:
            self._memory = tables.Snapshot(
                members={g: frozenset(u) for g, u in groups.items()},
                refreshed_at=utcnow(),
                unavailable=None,
            )
            return
        await db.run(partial(tables.replace_all, groups=groups))

    async def _load(self) -> tables.Snapshot:
        snapshot = self._memory if self.db is None else await self.db.run(tables.read_snapshot)
        self._snapshot, self._loaded_at = snapshot, self.clock()
        return snapshot

    # -- people and channels (Slack, cached briefly) ---------------------------------

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


def _user_ids(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [u for u in value if isinstance(u, str) and u]
