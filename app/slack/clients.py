"""The Web API clients: every call retried after a 429's Retry-After, except the outbox's.

Slack answers a call over its method's tier budget with HTTP 429 and ``Retry-After``
(https://docs.slack.dev/apis/web-api/rate-limits). slack_sdk has the retry for it
(`AsyncRateLimitErrorRetryHandler`, which sleeps Retry-After and tries again), so every
client the bot calls Slack with carries it, next to the SDK's default connection-error
retry. The outbox's deliverer is the exception: it paces each channel itself and keeps a
429'd message durably for later (engine.deliverer), so its client must see the 429
rather than sleep on it in the middle of a delivery lane.
"""

from __future__ import annotations

from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

RATE_LIMIT_RETRIES = 2
"""How many times one call is retried after a 429 before the caller sees it."""


def with_rate_limit_retries(client: AsyncWebClient) -> AsyncWebClient:
    """`client`, retrying 429s after Retry-After (added once; kept if already there)."""
    if not any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)
        )
    return client


def outbox_client(client: AsyncWebClient) -> AsyncWebClient:
    """A sibling of `client` (same token, URL, session) that hands 429s to its caller."""
    handlers: list[AsyncRetryHandler] = [
        h for h in client.retry_handlers if not isinstance(h, AsyncRateLimitErrorRetryHandler)
    ]
    if not any(isinstance(h, AsyncConnectionErrorRetryHandler) for h in handlers):
        handlers.append(AsyncConnectionErrorRetryHandler())
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        session=client.session,
        headers=dict(client.headers),
        retry_handlers=handlers,
    )
