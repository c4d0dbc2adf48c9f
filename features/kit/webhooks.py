"""What every webhook a feature serves shares: a body read within a bound, never whole
first, JSON parsed within a bound on its nesting, and a shared-secret check that takes
the same time whatever is wrong."""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

MAX_DEPTH = 64
"""No body we accept nests deeper (Slack's views, Alertmanager's and GitLab's payloads
stay under 15); deeper is refused before anything walks it recursively."""


async def read_bounded(request: web.Request, limit: int) -> bytes | None:
    """A webhook's body, or None once it is known to exceed `limit` bytes (refused from
    its Content-Length, or while reading; never buffered whole)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def same_secret(given: str, expected: str) -> bool:
    """Whether `given` is the secret, compared in constant time; an empty one never is."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


class TooDeep(ValueError):
    """A JSON document nested deeper than it may be."""


def parse_json(body: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`body` as JSON, nested at most `max_depth` deep; ValueError (JSONDecodeError,
    UnicodeDecodeError or TooDeep) for anything else, never RecursionError.

    The C decoder gives up with RecursionError past the interpreter's recursion limit
    (50,000 nested `[` do that); shallower but still deep documents are measured after
    decoding, without recursion, before any code (pydantic, Bolt, ours) walks them.
    """
    try:
        data = json.loads(body)
    except RecursionError:
        raise TooDeep(f"the JSON is nested deeper than {max_depth} levels") from None
    if _depth_exceeds(data, max_depth):
        raise TooDeep(f"the JSON is nested deeper than {max_depth} levels")
    return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
