"""Headless Chromium from Debian (`/usr/bin/chromium`), driven by Playwright: the page
the bot serves, seen as people see it. Never a browser download (`playwright install`
is not used): Playwright's client is pointed at Debian's binary.

`open_browser()` launches it with a fresh profile and the quiet flags CI wants; the
sandbox console (`/open`) and the browser test share it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
"""Screenshots the tests and the console keep for review (gitignored)."""


class BrowserUnavailable(RuntimeError):
    pass


@contextlib.asynccontextmanager
async def open_browser() -> AsyncIterator[Any]:
    """A Playwright BrowserContext on Debian's Chromium with a throw-away profile."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat, before any await
        raise BrowserUnavailable(
            f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does)"
        )
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        raise BrowserUnavailable(
            "Playwright is not installed: `.venv/bin/pip install -e '.[dev]'`"
        ) from None

    with tempfile.TemporaryDirectory(prefix="platform-bot-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=list(FLAGS),  # the profile is Playwright's --user-data-dir
            )
            try:
                yield context
            finally:
                await context.close()
