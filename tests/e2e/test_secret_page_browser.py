"""The secrets page in a real browser: Debian's headless Chromium, driven by Playwright.

Open the link from Slack, type, submit, see the confirmation; a reused link and an
expired one show a clear error page; the strict Content-Security-Policy lets the page
render (its one stylesheet is allowed by hash) and nothing is refused or loaded from
elsewhere. Screenshots are kept under test-artifacts/ (gitignored) for review.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import hvac
import pytest

from sandbox.app.browser import ARTIFACTS, open_browser
from sandbox.app.stack import SandboxStack, sandbox_stack
from tests.harness import Chat

LINK = re.compile(r"<(https?://[^|>]+)\|")


@pytest.fixture
async def stack(tmp_path: Any) -> AsyncIterator[SandboxStack]:
    async with sandbox_stack(database_url=f"sqlite:///{tmp_path / 'bot.db'}", vault=True) as s:
        yield s


async def link(chat: Chat, key: str) -> str:
    seen = await chat.say(f"/platform secret set checkout staging {key}")
    found = LINK.search(seen.text)
    assert found is not None, seen.text
    return found.group(1)


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"secret-page-{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


async def test_the_page_in_chromium_sets_a_secret_once(stack: SandboxStack) -> None:
    chat = Chat(stack)
    url = await link(chat, "BROWSER_TOKEN")
    value = "browser-" + secrets.token_hex(12)
    async with open_browser() as browser:
        page = await browser.new_page()
        problems: list[str] = []
        page.on(
            "console",
            lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.on("request", lambda r: None if r.url.startswith(url) else problems.append(r.url))
        response = await page.goto(url)
        assert response is not None and response.status == 200
        assert await page.inner_text("h1") == "Set BROWSER_TOKEN"
        assert "secret/payments/checkout/staging/BROWSER_TOKEN" in await page.inner_text("body")
        color = await page.eval_on_selector("p.note", "e => getComputedStyle(e).color")
        assert color == "rgb(85, 85, 85)", "the stylesheet was refused by the CSP"
        await shot(page, "form")
        await page.fill("textarea#value", value)
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        assert await page.inner_text("h1") == "Received"
        body = await page.inner_text("body")
        assert "is being written to Vault" in body and value not in body
        await shot(page, "received")

        again = await page.goto(url)
        assert again is not None and again.status == 410
        assert await page.inner_text("h1") == "This link was already used"
        await shot(page, "used")
        assert problems == []

        late = await link(chat, "LATE_TOKEN")
        stack.clock.advance(timedelta(minutes=11))
        expired = await page.goto(late)
        assert expired is not None and expired.status == 410
        assert await page.inner_text("h1") == "This link has expired"
        await shot(page, "expired")

    root = hvac.Client(url=stack.vault_url, token=stack.vault_token)
    stored = root.secrets.kv.v2.read_secret_version(
        path="payments/checkout/staging/BROWSER_TOKEN",
        mount_point="secret",
        raise_on_deleted_version=True,
    )
    assert stored["data"]["data"] == {"BROWSER_TOKEN": value}
