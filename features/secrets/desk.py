"""The secrets desk: single-use links, values received privately, and their way to Vault.

`issue` makes a link for one person, service, environment and key, valid ten minutes;
only the SHA-256 of its token is stored. The page (features.secrets.page) and the Slack
modal (features.secrets.modal) hand the value to `receive`, which checks the link,
encrypts the value with the bot's transit key, consumes the link with one conditional
UPDATE (so a reused link fails, however fast), stores the ciphertext and proposes a
`SetSecret` through the one path. The value is never logged, audited or put in an
exception; what people see of it is its length and a keyed hash.

`sweep` (a background loop) discards values whose Run was rejected, expired or
cancelled, and any left past their `discard_at`, and forgets links a day after they end.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from engine.audit import record_in
from engine.db import Database, RunRow
from engine.tasks import sleep_unless
from engine.timers import Clock
from features.kit.context import Ports
from features.kit.rights import Place
from features.secrets.actions import SetSecret, check_value
from features.secrets.tables import PendingSecretRow, SecretLinkRow
from kernel.errors import AdapterError, ChangeRefused
from kernel.ids import EnvironmentName, ServiceName, SlackChannelId, SlackUserId
from kernel.ports.platform import AuditEntry, Proposal

log = logging.getLogger(__name__)

LINK_MINUTES = 10
KEEP_FAILED = timedelta(hours=24)
"""A value whose Run failed is kept this long, so Retry can still write it."""
VAULT_SECONDS = 2.0
"""How long receiving may wait on Vault (a modal's answer must fit in Slack's 3 s)."""
SWEEP_SECONDS = 30.0
DISCARD_STATES = ("cancelled", "succeeded")

LinkProblem = Literal["unknown", "used", "expired", "stale_page", "someone_else"]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Link:
    """A link as stored: who may use it for what, until when."""

    id: str
    user: SlackUserId
    channel: SlackChannelId
    place: Place
    key: str
    expires_at_text: str

    @property
    def path(self) -> str:
        return f"secret/{self.place.team}/{self.place.service}/{self.place.env}/{self.key}"


class LinkRefused(Exception):
    """The link cannot be used: unknown, used, expired, or another page's."""

    def __init__(self, problem: LinkProblem) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class Received:
    """What became of a value: its Run (and approval, if it waits for one)."""

    link: Link
    proposal: Proposal
    length: int
    digest: str


class ValueRefused(Exception):
    """The value (or Vault, or the change) was refused; `message` is plain text for the
    person, never containing the value."""

    def __init__(self, message: str, *, consumed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.consumed = consumed


class SecretsDesk:
    """Links, pending values and proposing their writes; one per bot."""

    def __init__(self, ports: Ports, db: Database, *, clock: Clock, public_url: str | None) -> None:
        self.ports, self.db, self.clock = ports, db, clock
        self.public_url = public_url.rstrip("/") if public_url else None

    # -- links -----------------------------------------------------------------------

    async def issue(
        self, *, user: SlackUserId, channel: SlackChannelId, place: Place, key: str
    ) -> tuple[str, Link]:
        """A new link's token (to put in the URL, shown once) and the link."""
        token = secrets.token_urlsafe(32)
        now = self.clock.now()
        row = SecretLinkRow(
            token_hash=token_hash(token),
            user=user,
            channel=channel,
            service=place.service,
            environment=place.env,
            team=place.team,
            key=key,
            created_at=now,
            expires_at=now + timedelta(minutes=LINK_MINUTES),
        )

        def save(session: Session) -> Link:
            session.add(row)
            session.flush()
            record_in(
                session,
                AuditEntry(
                    at=now,
                    actor=user,
                    event="secret.link_issued",
                    service=ServiceName(place.service),
                    environment=EnvironmentName(place.env),
                    detail={"key": key, "link": row.id},
                ),
            )
            return _link(row)

        return token, await self.db.run(save)

    def url(self, token: str) -> str:
        assert self.public_url is not None
        return f"{self.public_url}/secrets/set/{token}"

    async def link_by_token(self, token: str) -> Link:
        """The usable link of `token`; LinkRefused saying why not."""
        return await self.db.run(lambda s: _link(self._usable(s, token_hash(token))))

    async def link_by_id(self, link_id: str, *, user: SlackUserId) -> Link:
        def find(session: Session) -> Link:
            row = session.get(SecretLinkRow, link_id)
            if row is None:
                raise LinkRefused("unknown")
            if row.user != user:
                raise LinkRefused("someone_else")
            return _link(self._usable(session, row.token_hash))

        return await self.db.run(find)

    def _usable(self, session: Session, hashed: str) -> SecretLinkRow:
        row = session.execute(
            select(SecretLinkRow).where(SecretLinkRow.token_hash == hashed)
        ).scalar()
        if row is None:
            raise LinkRefused("unknown")
        if row.used_at is not None:
            raise LinkRefused("used")
        if row.expires_at <= self.clock.now():
            raise LinkRefused("expired")
        return row

    async def new_page(self, token: str) -> tuple[Link, str]:
        """Serve the page of a usable link: a fresh CSRF token, whose hash it keeps (the
        page served before it stops working)."""
        csrf = secrets.token_urlsafe(32)

        def rotate(session: Session) -> Link:
            row = self._usable(session, token_hash(token))
            row.csrf_hash = token_hash(csrf)
            return _link(row)

        return await self.db.run(rotate), csrf

    # -- receiving a value -----------------------------------------------------------

    async def receive_from_page(self, token: str, *, csrf: str, value: str) -> Received:
        """The page's POST: the link, its page's CSRF token, the value."""

        def check(session: Session) -> Link:
            row = self._usable(session, token_hash(token))
            if row.csrf_hash is None or not hmac.compare_digest(row.csrf_hash, token_hash(csrf)):
                raise LinkRefused("stale_page")
            return _link(row)

        link = await self.db.run(check)
        return await self._receive(link, value, via="page", csrf=csrf)

    async def receive_from_modal(self, link_id: str, *, user: SlackUserId, value: str) -> Received:
        link = await self.link_by_id(link_id, user=user)
        return await self._receive(link, value, via="modal", csrf=None)

    async def _receive(
        self, link: Link, value: str, *, via: Literal["page", "modal"], csrf: str | None
    ) -> Received:
        problem = check_value(value)
        if problem is not None:
            raise ValueRefused(problem)
        vault = self.ports.adapters.vault
        if vault is None:
            raise ValueRefused("Vault is not configured on this bot; nothing was stored.")
        place = link.place
        try:
            async with asyncio.timeout(VAULT_SECONDS):
                ciphertext = await vault.encrypt(value)
                digest = await vault.fingerprint(value)
                current = await vault.read_key(place.team, place.service, place.env, link.key)
        except AdapterError as exc:
            raise ValueRefused(f"Vault refused it, so nothing was stored: {exc.message}") from None
        except TimeoutError:
            raise ValueRefused(
                f"Vault did not answer within {VAULT_SECONDS:g} s, so nothing was stored. "
                "Try again in a moment."
            ) from None
        length = len(value)
        del value  # from here on only the ciphertext exists
        now = self.clock.now()
        pending = PendingSecretRow(
            link_id=link.id, ciphertext=ciphertext, length=length, discard_at=now + KEEP_FAILED
        )

        def consume(session: Session) -> str:
            conditions = [
                SecretLinkRow.id == link.id,
                SecretLinkRow.used_at.is_(None),
                SecretLinkRow.expires_at > now,
            ]
            if csrf is not None:
                conditions.append(SecretLinkRow.csrf_hash == token_hash(csrf))
            claimed = session.execute(update(SecretLinkRow).where(*conditions).values(used_at=now))
            if not getattr(claimed, "rowcount", 0):
                raise LinkRefused("used")  # another request took it a moment ago
            session.add(pending)
            session.flush()
            record_in(
                session,
                AuditEntry(
                    at=now,
                    actor=link.user,
                    event="secret.value_received",
                    service=ServiceName(place.service),
                    environment=EnvironmentName(place.env),
                    detail={"key": link.key, "via": via, "length": length, "digest": digest},
                ),
            )
            return pending.id

        pending_id = await self.db.run(consume)
        action = SetSecret(
            service=place.service,
            env=place.env,
            team=place.team,
            key=link.key,
            pending_id=pending_id,
            length=length,
            digest=digest,
            from_version=current.version if current is not None else 0,
            via=via,
        )
        try:
            proposal = await self.ports.changes.propose(
                action,
                requested_by=link.user,
                idempotency_key=f"secret-link:{link.id}",
                reply_channel=link.channel or None,
            )
        except ChangeRefused as exc:
            await self.discard(pending_id)
            raise ValueRefused(_plain(exc.message), consumed=True) from None
        keep_until = max(now + KEEP_FAILED, (proposal.expires_at or now) + timedelta(hours=1))
        await self.db.run(lambda s: _attach(s, link.id, pending_id, proposal.run_id, keep_until))
        return Received(link=link, proposal=proposal, length=length, digest=digest)

    # -- pending values (the executor's) ---------------------------------------------

    async def pending_ciphertext(self, pending_id: str) -> str | None:
        row = await self.db.run(lambda s: s.get(PendingSecretRow, pending_id))
        return row.ciphertext if row is not None else None

    async def discard(self, pending_id: str) -> None:
        await self.db.run(
            lambda s: s.execute(delete(PendingSecretRow).where(PendingSecretRow.id == pending_id))
        )

    async def sweep_once(self) -> int:
        """Discard values whose Run will never write them, or kept too long; how many."""
        now = self.clock.now()

        def sweep(session: Session) -> int:
            finished = select(RunRow.id).where(RunRow.state.in_(DISCARD_STATES))
            gone = session.execute(
                delete(PendingSecretRow).where(
                    PendingSecretRow.run_id.in_(finished) | (PendingSecretRow.discard_at < now)
                )
            )
            session.execute(  # links are hashes only; a day after they end they are noise
                delete(SecretLinkRow).where(SecretLinkRow.expires_at < now - KEEP_FAILED)
            )
            return int(getattr(gone, "rowcount", 0) or 0)

        discarded = await self.db.run(sweep)
        if discarded:
            log.info("discarded pending secret values", extra={"count": discarded})
        return discarded

    async def sweep(self, stop: asyncio.Event) -> None:
        while not await sleep_unless(stop, SWEEP_SECONDS):
            await self.sweep_once()


def _link(row: SecretLinkRow) -> Link:
    return Link(
        id=row.id,
        user=SlackUserId(row.user),
        channel=SlackChannelId(row.channel),
        place=Place(service=row.service, env=row.environment, team=row.team),
        key=row.key,
        expires_at_text=f"{row.expires_at:%H:%M} UTC",
    )


def _attach(
    session: Session, link_id: str, pending_id: str, run_id: str, keep_until: object
) -> None:
    session.execute(update(SecretLinkRow).where(SecretLinkRow.id == link_id).values(run_id=run_id))
    session.execute(
        update(PendingSecretRow)
        .where(PendingSecretRow.id == pending_id)
        .values(run_id=run_id, discard_at=keep_until)
    )


def _plain(mrkdwn: str) -> str:
    """A refusal written for Slack, readable on a web page."""
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
        mrkdwn = mrkdwn.replace(entity, char)
    return mrkdwn.replace("`", "").replace("*", "")
