"""Escaping user text for Slack mrkdwn.

Slack documents three characters to escape in message text: `&`, `<` and `>`. With
them escaped, nobody can make the bot ping `<!channel>`, mention `<@U…>` or show a
link whose text lies about its target (`<https://evil|docs>`).
"""

from __future__ import annotations


def escape(text: str) -> str:
    """Make user text inert in mrkdwn: it shows as typed and triggers nothing."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str) -> str:
    """User text shown as inline code, escaped, with backticks that cannot break out."""
    return "`" + escape(text).replace("`", "'") + "`"


def truncate(text: str, limit: int) -> str:
    """Cut to `limit` characters with an ellipsis, never splitting an escape sequence
    (`&amp;`) or one of our own mentions and links (`<@U123>`, `<https://…|label>`)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    angle = cut.rfind("<")
    if angle != -1 and ">" not in cut[angle:]:
        cut = cut[:angle]
    return cut + "…"
