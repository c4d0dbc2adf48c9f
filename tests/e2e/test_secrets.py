"""`/platform secret ...` end to end: signed Slack requests into the real bot, the page
opened by an HTTP client (the browser test is tests/e2e/test_secret_page_browser.py),
and a real OpenBao behind the bot's Vault adapter.

The value is checked where it must be (readable by the service's Vault role, by nobody
else's) and where it must never be: any Slack call, log line, audit entry, metric
label, Run row, step output or outbox row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import hvac
import hvac.exceptions
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import AuditRow, OutboxRow, RunRow, RunStepRow
from features.secrets.tables import PendingSecretRow
from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.e2e.helpers import click
from tests.harness import Chat, eventually

LINK = re.compile(r"<(https?://[^|>]+)\|")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def stack(database_url: str) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=database_url, vault=True) as running:
        yield running


class Page:
    """A browser-like client: cookies kept, Origin sent as a browser sends it."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def open(self) -> tuple[int, str, dict[str, str]]:
        async with self.http.get(self.url) as response:
            return response.status, await response.text(), dict(response.headers)

    async def submit(self, value: str, *, csrf: str | None = None) -> tuple[int, str]:
        if csrf is None:
            status, text, _ = await self.open()
            assert status == 200, text
            found = CSRF.search(text)
            assert found is not None
            csrf = found.group(1)
        body = urlencode({"csrf": csrf, "value": value})
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin}
        async with self.http.post(self.url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def close(self) -> None:
        await self.http.close()


async def ask_link(chat: Chat, text: str, *, as_user: str = "alice") -> str:
    seen = await chat.say(text, as_user=as_user)
    found = LINK.search(seen.text)
    assert found is not None, seen.text
    return found.group(1)


async def set_through_page(chat: Chat, service: str, env: str, key: str, value: str) -> str:
    page = Page(await ask_link(chat, f"/platform secret set {service} {env} {key}"))
    try:
        status, text = await page.submit(value)
    finally:
        await page.close()
    assert status == 200, text
    return text


async def run_state(stack: SandboxStack, kind: str, *, n: int = 1) -> list[str]:
    def read(session: Session) -> list[str]:
        rows = session.execute(
            select(RunRow.state).where(RunRow.action_kind == kind).order_by(RunRow.created_at)
        )
        return list(rows.scalars())

    async def settled() -> list[str] | None:
        states = await stack.bot.db.run(read)
        done = len(states) >= n and all(s in ("succeeded", "failed", "cancelled") for s in states)
        return states if done else None

    deadline = time.monotonic() + 15
    while (states := await settled()) is None:
        assert time.monotonic() < deadline, await stack.bot.db.run(read)
        await asyncio.sleep(0.05)
    return states


def vault_as(stack: SandboxStack, *policies: str) -> Any:
    """A client holding a token with exactly these policies, as the service's Kubernetes
    auth role would issue (its token_policies)."""
    root = hvac.Client(url=stack.vault_url, token=stack.vault_token)
    token = root.auth.token.create(policies=list(policies), ttl="5m")["auth"]["client_token"]
    return hvac.Client(url=stack.vault_url, token=token)


def read_value(client: Any, path: str) -> dict[str, Any]:
    response = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    data: dict[str, Any] = response["data"]["data"]
    return data


async def everything_said(stack: SandboxStack, caplog: pytest.LogCaptureFixture) -> str:
    """Every Slack call, log line, audit entry, metric, Run, step and outbox row."""

    def rows(session: Session) -> list[Any]:
        found: list[Any] = []
        for row in session.execute(select(AuditRow)).scalars():
            found.append([row.event, row.actor, row.detail])
        for run in session.execute(select(RunRow)).scalars():
            found.append([run.action, run.error, run.result, run.flags])
        for step in session.execute(select(RunStepRow)).scalars():
            found.append([step.output, step.error, step.detail, step.title])
        for out in session.execute(select(OutboxRow)).scalars():
            found.append([out.payload, out.error])
        return found

    slack = [[c.method, c.args, c.response] for c in stack.slack.calls]
    logs = [[r.getMessage(), {k: str(v) for k, v in r.__dict__.items()}] for r in caplog.records]
    return json.dumps(
        [slack, logs, await stack.bot.db.run(rows), stack.bot.metrics.render().decode()],
        default=str,
    )


async def test_a_value_set_through_the_page_reaches_only_the_services_vault_role(
    stack: SandboxStack, chat: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    value = secrets.token_urlsafe(24)
    url = await ask_link(chat, "/platform secret set checkout staging API_TOKEN")
    page = Page(url)
    try:
        status, form, headers = await page.open()
        assert status == 200
        assert "secret/payments/checkout/staging/API_TOKEN" in form
        assert "never passes" in form and "through Slack" in form
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "form-action 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
        assert "<script" not in form
        status, done = await page.submit(value)
        assert status == 200, done
        assert "Received" in done and value not in done
        assert await run_state(stack, "secret.set") == ["succeeded"]

        # the link is spent: opening or posting it again is refused, clearly
        status, again, _ = await page.open()
        assert status == 410 and "already used" in again
        status, again = await page.submit("something else", csrf="x" * 43)
        assert status in (403, 410)
    finally:
        await page.close()

    mine = vault_as(stack, "payments-checkout-staging")
    assert read_value(mine, "payments/checkout/staging/API_TOKEN") == {"API_TOKEN": value}
    theirs = vault_as(stack, "search-search-api-staging")
    with pytest.raises(hvac.exceptions.Forbidden):
        read_value(theirs, "payments/checkout/staging/API_TOKEN")
    prod = vault_as(stack, "payments-checkout-prod")
    with pytest.raises(hvac.exceptions.Forbidden):
        read_value(prod, "payments/checkout/staging/API_TOKEN")

    listed = await chat.say("/platform secret list checkout staging")
    assert "`API_TOKEN` version 1" in listed.text and "<@U01ALICE>" in listed.text
    said = await everything_said(stack, caplog)
    assert value not in said and value[:8] not in said
    assert await stack.bot.db.run(lambda s: s.query(PendingSecretRow).count()) == 0


async def test_rollback_and_delete_through_the_one_path(stack: SandboxStack, chat: Chat) -> None:
    first, second = "first-" + secrets.token_hex(8), "second-" + secrets.token_hex(8)
    await set_through_page(chat, "checkout", "staging", "DB_PASSWORD", first)
    await run_state(stack, "secret.set")
    await set_through_page(chat, "checkout", "staging", "DB_PASSWORD", second)
    await run_state(stack, "secret.set", n=2)
    mine = vault_as(stack, "payments-checkout-staging")
    assert read_value(mine, "payments/checkout/staging/DB_PASSWORD") == {"DB_PASSWORD": second}

    refused = await chat.say(
        "/platform secret rollback checkout staging DB_PASSWORD --to-version 9"
    )
    assert "cannot go back to version 9" in refused.text
    seen = await chat.say("/platform secret rollback checkout staging DB_PASSWORD --to-version 1")
    assert "roll back secret DB_PASSWORD" in seen.text
    assert await run_state(stack, "secret.rollback") == ["succeeded"]
    assert read_value(mine, "payments/checkout/staging/DB_PASSWORD") == {"DB_PASSWORD": first}
    listed = await chat.say("/platform secret list checkout staging")
    assert "`DB_PASSWORD` version 3" in listed.text and "earlier: 1, 2" in listed.text

    await chat.say("/platform secret delete checkout staging DB_PASSWORD")
    assert await run_state(stack, "secret.delete") == ["succeeded"]
    listed = await chat.say("/platform secret list checkout staging")
    assert "`DB_PASSWORD` version 3 · *deleted*" in listed.text


async def test_a_prod_secret_waits_for_approval_and_the_card_never_shows_it(
    stack: SandboxStack, chat: Chat
) -> None:
    value = secrets.token_urlsafe(20)
    done = await set_through_page(chat, "checkout", "prod", "STRIPE_KEY", value)
    assert "waits for approval" in done and "prod-secrets" in done, done[-900:]
    card = await eventually(
        lambda: next(
            (
                m
                for m in stack.slack.messages.get("C01PAYMENTS", [])
                if "STRIPE_KEY" in json.dumps(m.blocks) and "Approve" in json.dumps(m.blocks)
            ),
            None,
        )
    )
    shown = json.dumps(card.blocks)
    assert f"{len(value)} characters" in shown and "keyed hash" in shown
    assert value not in shown and value[:8] not in shown
    await stack.sender.block_actions(
        user="bob", action_id="approval.approve", channel="#payments", message_ts=card.ts
    )
    assert await run_state(stack, "secret.set") == ["succeeded"]
    mine = vault_as(stack, "payments-checkout-prod")
    assert read_value(mine, "payments/checkout/prod/STRIPE_KEY") == {"STRIPE_KEY": value}


async def test_a_rejected_value_is_discarded(stack: SandboxStack, chat: Chat) -> None:
    await set_through_page(chat, "checkout", "prod", "REJECT_ME", secrets.token_hex(12))
    card = await eventually(
        lambda: next(
            (
                m
                for m in stack.slack.messages.get("C01PAYMENTS", [])
                if "REJECT_ME" in json.dumps(m.blocks) and "Reject" in json.dumps(m.blocks)
            ),
            None,
        )
    )
    assert await stack.bot.db.run(lambda s: s.query(PendingSecretRow).count()) == 1
    await stack.sender.block_actions(
        user="bob", action_id="approval.reject", channel="#payments", message_ts=card.ts
    )
    modal = await eventually(
        lambda: next(
            (v for v in stack.slack.views.values() if v.view["callback_id"] == "approval.reject"),
            None,
        )
    )
    await stack.sender.view_submission(
        user="bob", view_id=modal.id, values={"reason": {"value": "not in prod today"}}
    )
    assert await run_state(stack, "secret.set") == ["cancelled"]
    desk = stack.bot.features.commands.by_name["secret"].desk  # type: ignore[attr-defined]
    assert await desk.sweep_once() == 1
    assert await stack.bot.db.run(lambda s: s.query(PendingSecretRow).count()) == 0


async def test_bad_input_is_refused_without_echo(stack: SandboxStack, chat: Chat) -> None:
    pasted = "hunter2-" + secrets.token_hex(6)
    seen = await chat.say(f"/platform secret set checkout staging API_TOKEN {pasted}")
    assert "looks like a secret value" in seen.text and "rotate it" in seen.text
    assert pasted not in seen.text
    seen = await chat.say(f"/platform secret set checkout staging API_TOKEN={pasted}")
    assert "looks like a secret value" in seen.text and pasted not in seen.text
    hostile = "../../sys/policy/root"
    seen = await chat.say(f"/platform secret set checkout staging {hostile}")
    assert "not a key name" in seen.text and hostile not in seen.text
    seen = await chat.say("/platform secret set chekout staging API_TOKEN")
    assert "checkout" in seen.text  # did you mean
    seen = await chat.say("/platform secret set checkout prod-us API_TOKEN")
    assert "prod" in seen.text
    seen = await chat.say("/platform secret set checkout staging API_TOKEN", as_user="carol")
    assert "Only the *payments* team" in seen.text and "#payments" in seen.text
    seen = await chat.say("/platform secret frobnicate checkout staging")
    assert "`set`, `list`, `delete`, `rollback` or `rotate`" in seen.text
    calls = json.dumps([[c.args, c.response] for c in stack.slack.calls])
    assert pasted not in calls and hostile not in calls

    page = Page(await ask_link(chat, "/platform secret set checkout staging BIG"))
    try:
        status, text = await page.submit("x" * (40 * 1024))
        assert status in (413, 422) and "bytes" in text
        status, text = await page.submit("")
        assert status == 422 and "empty" in text
        status, text, _ = await page.open()
        assert status == 200  # refusals never spend the link
    finally:
        await page.close()


async def test_an_expired_or_forged_link_shows_a_clear_page(
    stack: SandboxStack, chat: Chat
) -> None:
    url = await ask_link(chat, "/platform secret set checkout staging LATE")
    stack.clock.advance(timedelta(minutes=11))
    page = Page(url)
    try:
        status, text, headers = await page.open()
        assert status == 410 and "expired" in text
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        forged = Page(url[:-5] + "AAAAA")
        status, text, _ = await forged.open()
        await forged.close()
        assert status == 404 and "not valid" in text
    finally:
        await page.close()


async def test_a_post_from_another_site_is_refused(stack: SandboxStack, chat: Chat) -> None:
    url = await ask_link(chat, "/platform secret set checkout staging CSRF_TEST")
    page = Page(url)
    try:
        status, form, _ = await page.open()
        csrf = CSRF.search(form)
        assert csrf is not None
        body = urlencode({"csrf": csrf.group(1), "value": "v"})
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://evil.example.com",
        }
        async with page.http.post(url, data=body, headers=headers) as response:
            assert response.status == 403
        fresh = aiohttp.ClientSession()  # no cookie: the form's token alone is not enough
        async with fresh.post(
            url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        ) as response:
            assert response.status == 403
        await fresh.close()
        status, _, _ = await page.open()
        assert status == 200  # still usable by its owner
    finally:
        await page.close()


async def test_without_a_public_url_a_modal_is_offered_with_a_warning(
    database_url: str,
) -> None:
    async with sandbox_stack(
        database_url=database_url, vault=True, settings_overrides={"public_url": None}
    ) as stack:
        chat = Chat(stack)
        seen = await chat.say("/platform secret set checkout staging MODAL_KEY")
        assert "PUBLIC_URL" in seen.text and "passes through Slack's servers" in seen.text
        button = seen.blocks[1]["elements"][0]
        await click(
            stack,
            "alice",
            button["action_id"],
            button["value"],
            channel="C01PAYMENTS",
            channel_name="payments",
            ephemeral=True,
        )
        view = await eventually(
            lambda: next(
                (v for v in stack.slack.views.values() if v.view["callback_id"] == "secrets.set"),
                None,
            )
        )
        value = "modal-" + secrets.token_hex(10)
        response = await stack.sender.view_submission(
            user="alice", view_id=view.id, values={"value": {"value": value}}
        )
        assert response.status == 200 and value not in response.body
        assert await run_state(stack, "secret.set") == ["succeeded"]
        mine = vault_as(stack, "payments-checkout-staging")
        assert read_value(mine, "payments/checkout/staging/MODAL_KEY") == {"MODAL_KEY": value}
        calls = json.dumps([[c.args, c.response] for c in stack.slack.calls])
        assert value not in calls
