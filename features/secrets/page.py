"""The one page the bot serves to browsers: `GET /secrets/set/<token>` and its POST.

Plain HTML and one form, no script at all, one inline stylesheet allowed by its hash.
Every answer carries a strict Content-Security-Policy (nothing loads, the form posts
only back here, no framing) and the other security headers, and is never cached or
indexed; the token never leaves in a Referer. A POST must carry the page's CSRF token
twice (form field and a SameSite=Strict cookie scoped to this link) and, when the
browser says where it came from (Origin, or Sec-Fetch-Site when our no-referrer policy
makes the Origin `null`), come from this page. The page
says exactly where the value goes. Nothing here logs or echoes the value: a refused
value is never put back in the form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from features.kit.webhooks import read_bounded
from features.secrets.actions import MAX_VALUE_BYTES
from features.secrets.desk import Link, LinkRefused, Received, SecretsDesk, ValueRefused

PATH = "/secrets/set/{token}"
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
COOKIE = "platform_bot_csrf"
MAX_BODY = 3 * MAX_VALUE_BYTES + 4096
"""Form encoding can triple a value's size; anything larger is refused unread."""

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;"
    "color:#1d1c1d;line-height:1.45}"
    "code{background:#f4f4f4;padding:0 .2em;border-radius:3px}"
    "textarea{width:100%;min-height:8rem;font-family:monospace;box-sizing:border-box}"
    "button{font-size:1rem;padding:.5rem 1.2rem;margin-top:.8rem}"
    ".error{color:#a4000f;border-left:4px solid #a4000f;padding-left:.6rem}"
    ".ok{color:#006b3c;border-left:4px solid #006b3c;padding-left:.6rem}"
    ".note{color:#555;font-size:.9rem}"
)
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{STYLE_HASH}'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def security_headers(*, https: bool) -> dict[str, str]:
    """Headers on every answer of the page."""
    headers = {
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
        "X-Robots-Tag": "noindex, nofollow",
    }
    if https:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


class SecretPage:
    """The handlers of the page, on the desk."""

    def __init__(self, desk: SecretsDesk) -> None:
        self.desk = desk

    @property
    def https(self) -> bool:
        return (self.desk.public_url or "").startswith("https://")

    async def get(self, request: web.Request) -> web.Response:
        token = request.match_info.get("token", "")
        if not TOKEN.fullmatch(token):
            return self._problem("unknown")
        try:
            link, csrf = await self.desk.new_page(token)
        except LinkRefused as refused:
            return self._problem(refused.problem)
        return self._form(link, csrf, path=request.path)

    async def post(self, request: web.Request) -> web.Response:
        token = request.match_info.get("token", "")
        if not TOKEN.fullmatch(token):
            return self._problem("unknown")
        if not self._same_origin(request.headers):
            return self._page(
                "Refused",
                "<p class='error'>This form was sent from another site, so it was refused. "
                "Open the link from Slack again.</p>",
                status=403,
            )
        if request.content_type != "application/x-www-form-urlencoded":
            return self._page("Refused", "<p class='error'>Send the form itself.</p>", status=415)
        body = await read_bounded(request, MAX_BODY)
        if body is None:
            return await self._again(
                request, token, f"The value is larger than {MAX_VALUE_BYTES:,} bytes.", 413
            )
        try:
            fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            return self._page("Refused", "<p class='error'>That form was garbled.</p>", status=400)
        given = (fields.get("csrf") or [""])[0]
        cookie = request.cookies.get(COOKIE, "")
        if not given or not hmac.compare_digest(given.encode(), cookie.encode()):
            return self._problem("stale_page")
        value = (fields.get("value") or [""])[0].replace("\r\n", "\n")
        try:
            received = await self.desk.receive_from_page(token, csrf=given, value=value)
        except LinkRefused as refused:
            return self._problem(refused.problem)
        except ValueRefused as refused:
            if refused.consumed:
                return self._page(
                    "Not stored", f"<p class='error'>{html.escape(refused.message)}</p>", 409
                )
            return await self._again(request, token, refused.message, 422)
        return self._done(received)

    def _same_origin(self, headers: Mapping[str, str]) -> bool:
        """Whether the browser says the POST came from this page. Under our own
        `Referrer-Policy: no-referrer` a browser sends `Origin: null` for the form, so
        then Fetch Metadata (`Sec-Fetch-Site: same-origin`) must say it instead."""
        site = headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = headers.get("Origin")
        if origin == "null":
            return site == "same-origin"
        if origin is None or self.desk.public_url is None:
            return True
        public = urlsplit(self.desk.public_url)
        return origin == f"{public.scheme}://{public.netloc}"

    async def _again(
        self, request: web.Request, token: str, message: str, status: int
    ) -> web.Response:
        """The form again, empty, with what was wrong (never the value)."""
        try:
            link, csrf = await self.desk.new_page(token)
        except LinkRefused as refused:
            return self._problem(refused.problem)
        return self._form(link, csrf, path=request.path, error=message, status=status)

    # -- what is shown ---------------------------------------------------------------

    def _form(
        self,
        link: Link,
        csrf: str,
        *,
        path: str,
        error: str | None = None,
        status: int = 200,
    ) -> web.Response:
        e = html.escape
        key, place = e(link.key), link.place
        origin = e(self.desk.public_url or "this bot")
        plain_http = (
            ""
            if self.https
            else "<p class='note'>This page is served without HTTPS: use it only on a "
            "trusted network (the sandbox, a laptop).</p>"
        )
        problem = f"<p class='error' role='alert'>{e(error)}</p>" if error else ""
        body = f"""
<h1>Set <code>{key}</code></h1>
<p>for <b>{e(place.service)}</b> in <b>{e(place.env)}</b> (team {e(place.team)}).</p>
<p>The value goes from this browser straight to platform-bot at <code>{origin}</code>, which
writes it to Vault (KV v2) at <code>{e(link.path)}</code> as a new version. It never passes
through Slack, and the bot never logs it or shows it: approvers see its length and a short
keyed hash only. If the platform's approval policy requires it, the write waits for
approval; until then the value is kept encrypted by Vault's transit engine, and discarded
if the request is rejected or expires.</p>
<p class="note">This link works once, for the person who asked for it in Slack, until
{e(link.expires_at_text)}.</p>
{plain_http}{problem}
<form method="post" action="{e(path)}" autocomplete="off">
<input type="hidden" name="csrf" value="{e(csrf)}">
<label for="value">Value of <code>{key}</code></label>
<textarea id="value" name="value" required autofocus autocomplete="off" autocapitalize="off"
 autocorrect="off" spellcheck="false" maxlength="{MAX_VALUE_BYTES}"></textarea>
<button type="submit">Store in Vault</button>
</form>"""
        response = self._page(f"Set {link.key}", body, status)
        response.set_cookie(
            COOKIE,
            csrf,
            path=path,
            max_age=15 * 60,
            httponly=True,
            samesite="Strict",
            secure=self.https,
        )
        return response

    def _done(self, received: Received) -> web.Response:
        e, link, proposal = html.escape, received.link, received.proposal
        if proposal.approval_id is not None:
            until = f"{proposal.expires_at:%H:%M} UTC" if proposal.expires_at else "it expires"
            outcome = (
                f"<p class='ok'>Received. Writing <code>{e(link.key)}</code> waits for approval "
                f"(rule <code>{e(proposal.rule or 'approval policy')}</code>) until {e(until)}. "
                "Until then the value is kept encrypted by Vault's transit engine; it is "
                "discarded if the request is rejected or expires.</p>"
            )
        else:
            outcome = (
                f"<p class='ok'>Received. <code>{e(link.key)}</code> is being written to Vault "
                f"at <code>{e(link.path)}</code>.</p>"
            )
        body = f"""
<h1>Received</h1>
{outcome}
<p>{received.length} characters, keyed hash <code>{e(received.digest)}</code>. Slack shows
the progress where you asked. You can close this page; the link no longer works.</p>"""
        return self._page(f"{link.key} received", body, 200)

    def _problem(self, problem: str) -> web.Response:
        title, text, status = PROBLEMS.get(problem, PROBLEMS["unknown"])
        return self._page(title, f"<h1>{title}</h1><p class='error'>{text}</p>", status)

    def _page(self, title: str, body: str, status: int) -> web.Response:
        document = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>{html.escape(title)} · platform-bot</title><style>{STYLE}</style>"
            f"</head><body>{body}</body></html>"
        )
        return web.Response(
            text=document,
            status=status,
            content_type="text/html",
            charset="utf-8",
            headers=security_headers(https=self.https),
        )


PROBLEMS: dict[str, tuple[str, str, int]] = {
    "unknown": (
        "This link is not valid",
        "Check that you copied all of it, or ask for a new one in Slack with "
        "<code>/platform secret set &lt;service&gt; &lt;env&gt; &lt;KEY&gt;</code>.",
        404,
    ),
    "used": (
        "This link was already used",
        "A link sets one value, once. If you need to set it again, ask for a new link in "
        "Slack with <code>/platform secret set</code>.",
        410,
    ),
    "expired": (
        "This link has expired",
        "Links work for 10 minutes. Ask for a new one in Slack with "
        "<code>/platform secret set</code>; nothing was stored.",
        410,
    ),
    "stale_page": (
        "This page is out of date",
        "The link was opened again somewhere else, or the form is too old. Open the link "
        "from Slack again; nothing was stored.",
        403,
    ),
    "someone_else": ("This link is someone else's", "Ask for your own link in Slack.", 403),
}
