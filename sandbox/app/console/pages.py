"""The console's browser and clock: `/open [n]` opens a link the bot sent (the secrets
page) and `/advance <duration>` moves the bot's clock forward so timers fire.

`/open` opens the newest link to the bot's own page that the current person was sent
(`/open 2`: the one before), in Debian's headless Chromium when it is installed
(sandbox.app.browser), else with a plain HTTP client, and prints the page as text. The
next line typed is the value: it is put in the form and submitted, and the page that
answers is printed. `/advance 2h` (or `90m`, `1h30m`) moves the sandbox's clock (every
timer, link expiry and grant end follows it) and fires whatever became due.
"""

from __future__ import annotations

import contextlib
import html
import re
from datetime import timedelta
from typing import Any, Protocol

import aiohttp

from sandbox.app.browser import BrowserUnavailable, open_browser
from sandbox.app.console.faults import FaultError, velero_fault
from sandbox.app.console.merge_requests import HELP as MR_HELP
from sandbox.app.console.merge_requests import MergeRequestError, MergeRequests
from sandbox.app.console.repl import Console as SlackConsole
from sandbox.app.stack import SandboxStack
from sandbox.standins.slack_api import SlackUser

PAGE_LINK = re.compile(r"<(https?://[^|>\s]+/secrets/set/[A-Za-z0-9_-]+)\|?")
DURATION = re.compile(r"^(?:(\d{1,3})d)?(?:(\d{1,4})h)?(?:(\d{1,5})m)?$")
TAG = re.compile(r"<[^>]+>")
COMMANDS = ("/open", "/advance", "/mr", "/velero")
HELP = """\
Pages and time:
  /open [n]            open the newest link to the bot's page (headless Chromium when
                       installed); the next line is the value to submit (/cancel: don't)
  /advance <duration>  move the bot's clock (2h, 15m): timers and expiries follow
  /velero fail-item <env> <plural>/<ns>/<name> <error> | location <env> Unavailable [why]
                       make Velero's stand-in meet an item error or lose its storage"""


class BrowsingConsole(SlackConsole):
    """The sandbox's console: Slack's client (sandbox.app.console.repl), plus a browser
    for the bot's page and a hand on the bot's clock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pages = PagesAndTime(self)
        self.merge_requests = MergeRequests(self)

    def prompt(self) -> str:
        return self.pages.prompt() if self.pages.waiting else super().prompt()

    async def handle(self, line: str) -> bool:
        stripped = line.strip()
        word, _, rest = stripped.partition(" ")
        mine = word in COMMANDS or (
            self.pages.waiting
            and (word == "/cancel" or (bool(stripped) and not word.startswith("/")))
            and not self.is_comment(line)
        )
        if not mine:
            handled = await super().handle(line)
            if word == "/help":
                for help_line in [*HELP.splitlines(), *MR_HELP.splitlines()]:
                    self.say(help_line)
            return handled
        self.output, self.last_command = [], stripped
        try:
            if word == "/mr":
                await self.merge_requests.command(rest)
            elif word in COMMANDS:
                await self.pages.command(word, rest)
            elif word == "/cancel":
                await self.pages.cancel()
            else:
                await self.pages.answer(stripped.removeprefix("\\"))
        except (PageError, MergeRequestError) as exc:
            self.problem(str(exc))
        return True


class Console(Protocol):
    """What of the console a page and the clock use."""

    stack: SandboxStack
    user: SlackUser

    def say(self, line: str = "") -> None: ...

    async def _show_new(self) -> None: ...


class PageError(Exception):
    """What the person typed cannot be done; one line says why."""


class PagesAndTime:
    """One console's open page (waiting for a value) and its clock."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.url: str | None = None
        self._browser: contextlib.AsyncExitStack | None = None
        self._page: Any = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def waiting(self) -> bool:
        return self.url is not None

    def prompt(self) -> str:
        return "  (page) type the value> "

    async def command(self, word: str, rest: str) -> None:
        if word == "/velero":
            try:
                self.console.say(velero_fault(self.console.stack, rest))
            except FaultError as exc:
                raise PageError(str(exc)) from None
        elif word == "/advance":
            await self.advance(rest)
        else:
            await self.open(rest)

    # -- the clock -----------------------------------------------------------------

    async def advance(self, text: str) -> None:
        match = DURATION.fullmatch(text.strip().lower())
        if not text.strip() or match is None or not any(match.groups()):
            raise PageError("Usage: /advance <duration>, e.g. /advance 2h or /advance 15m.")
        days, hours, minutes = (int(g) if g else 0 for g in match.groups())
        stack = self.console.stack
        stack.clock.advance(timedelta(days=days, hours=hours, minutes=minutes))
        for cluster in stack.clusters.values():  # Velero's clock too: expiry, schedules
            if cluster.velero is not None:
                cluster.velero.advance(((days * 24 + hours) * 60 + minutes) * 60)
        fired = await stack.bot.timers.fire_due()
        self.console.say(
            f"(the bot's clock is now {stack.clock.now():%H:%M} UTC; {fired} timer(s) fired)"
        )
        await self.console._show_new()

    # -- the page ------------------------------------------------------------------

    def _links(self) -> list[str]:
        """Links to the bot's page sent to the current person, newest first."""
        slack, me = self.console.stack.slack, self.console.user.id
        texts = [e.text for e in slack.ephemerals if e.user == me]
        texts += [m.text for messages in slack.messages.values() for m in messages]
        found = [u for text in texts for u in PAGE_LINK.findall(text)]
        return list(reversed(found))

    async def open(self, text: str) -> None:
        if self.waiting:
            raise PageError("A page is open already: type the value, or /cancel.")
        number = int(text) if text.strip().isdigit() else 1
        links = self._links()
        if not 1 <= number <= len(links):
            raise PageError("There is no link to the bot's page to open; ask for one first.")
        url = links[number - 1]
        try:
            body, status = await self._open_in_browser(url)
            how = "headless Chromium"
        except BrowserUnavailable as exc:
            body, status = await self._open_with_http(url)
            how = f"an HTTP client ({exc})"
        self.console.say(f"(opened {url} in {how}: HTTP {status})")
        self._show(body)
        if 'name="value"' in (await self._html()) and status == 200:
            self.url = url
        else:
            await self.close()

    async def answer(self, value: str) -> None:
        url, self.url = self.url, None
        assert url is not None
        try:
            if self._page is not None:
                await self._page.fill("textarea#value", value)
                async with self._page.expect_navigation():
                    await self._page.click("button[type=submit]")
                body, status = await self._page.inner_text("body"), 200
            else:
                body, status = await self._post(url, value)
            if status != 200:
                self.console.say(f"(submitted the form: HTTP {status})")
            self._show(body)
        finally:
            await self.close()
        await self.console._show_new()

    async def cancel(self) -> bool:
        if not self.waiting:
            return False
        self.url = None
        await self.close()
        self.console.say("(closed the page)")
        return True

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.aclose()
        if self._http is not None:
            await self._http.close()
        self._browser = self._page = self._http = None

    async def _open_in_browser(self, url: str) -> tuple[str, int]:
        exits = contextlib.AsyncExitStack()
        context = await exits.enter_async_context(open_browser())
        self._browser = exits
        self._page = await context.new_page()
        response = await self._page.goto(url)
        return await self._page.inner_text("body"), response.status if response else 0

    async def _open_with_http(self, url: str) -> tuple[str, int]:
        self._http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with self._http.get(url) as response:
            self._last_html = await response.text()
            return _text(self._last_html), response.status

    async def _html(self) -> str:
        if self._page is not None:
            return str(await self._page.content())
        return getattr(self, "_last_html", "")

    async def _post(self, url: str, value: str) -> tuple[str, int]:
        assert self._http is not None
        csrf = re.search(r'name="csrf" value="([^"]+)"', getattr(self, "_last_html", ""))
        form = {"csrf": csrf.group(1) if csrf else "", "value": value}
        headers = {"Sec-Fetch-Site": "same-origin"}
        async with self._http.post(url, data=form, headers=headers) as response:
            return _text(await response.text()), response.status

    def _show(self, body: str) -> None:
        for line in body.splitlines():
            if line.strip():
                self.console.say(f"  | {line.strip()}")


def _text(document: str) -> str:
    """A page as text, roughly as a browser shows it."""
    body = document.split("<body>", 1)[-1]
    body = re.sub(r"</(h1|p|label|form)>", "\n", body)
    return html.unescape(TAG.sub("", body))
