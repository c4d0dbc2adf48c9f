"""What every webhook a feature serves shares: a body read within a bound, never whole
first, and a shared-secret check that takes the same time whatever is wrong."""

from __future__ import annotations

import hmac

from aiohttp import web


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
