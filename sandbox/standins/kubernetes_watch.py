"""Watches for the Kubernetes stand-in: ``GET <list path>?watch=true``.

As the API server does (https://kubernetes.io/docs/reference/using-api/api-concepts/
#efficient-detection-of-changes, and k8s.io/apiserver ``pkg/endpoints/handlers/watch.go``):
the answer is a chunked stream of JSON ``WatchEvent`` objects, one per line,
``{"type": "ADDED" | "MODIFIED" | "DELETED", "object": {...}}``. With
``resourceVersion=N`` the stream starts with every change after N (a list's
``metadata.resourceVersion`` is where its watch starts); with none, or ``0``, it starts with
an ADDED event per object that exists now. An N older than the changes kept answers 410
Expired ("too old resource version"), so the client lists again. ``labelSelector`` and
``fieldSelector`` filter the events; ``timeoutSeconds`` ends the stream (as the server's
own timeout does) and so does stopping the stand-in. This is enough for client-go's
reflector (``kubectl rollout status``, ``kubectl get -w``) and the Python client's
``kubernetes.watch.Watch``.

Simplified: an object that stops matching a selector is not sent as DELETED; no
bookmarks (``allowWatchBookmarks`` is ignored); no ``sendInitialEvents``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Obj = dict[str, Any]


@dataclass(frozen=True)
class Event:
    rv: int
    type: str
    plural: str
    namespace: str
    object: Obj


class WatchRequested(Exception):
    """Raised by the list handler: this GET is a watch; the server streams it."""

    def __init__(self, plural: str, namespace: str | None, initial: list[Obj]) -> None:
        super().__init__(plural)
        self.plural = plural
        self.namespace = namespace
        self.initial = initial


class Expired(Exception):
    """The asked resourceVersion is older than the changes kept."""


_END = object()


class WatchHub:
    """Every change to the store, kept for a while and sent to the open watches."""

    def __init__(self, keep: int = 5000) -> None:
        self._events: deque[Event] = deque(maxlen=keep)
        self._queues: set[asyncio.Queue[Any]] = set()
        self._dropped_before = 0
        """Events with rv <= this may have been forgotten."""

    def publish(self, kind: str, plural: str, namespace: str, obj: Obj) -> None:
        rv = int(obj["metadata"].get("resourceVersion") or 0)
        if len(self._events) == self._events.maxlen:
            self._dropped_before = self._events[0].rv
        event = Event(rv, kind, plural, namespace, copy.deepcopy(obj))
        self._events.append(event)
        for queue in self._queues:
            queue.put_nowait(event)

    def close_all(self) -> None:
        """End every open watch (the stand-in stops)."""
        for queue in self._queues:
            queue.put_nowait(_END)

    async def stream(
        self,
        request: web.Request,
        watch: WatchRequested,
        matches: Callable[[Obj], bool],
    ) -> web.StreamResponse:
        since = request.query.get("resourceVersion", "")
        timeout = request.query.get("timeoutSeconds")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._queues.add(queue)  # before the replay: nothing falls between the two
        try:
            if since not in ("", "0"):
                try:
                    start = int(since)
                except ValueError:
                    start = -1
                if start < self._dropped_before:
                    raise Expired(since)
                first = [e for e in self._events if e.rv > start]
            else:
                first = [
                    Event(0, "ADDED", watch.plural, watch.namespace or "", obj)
                    for obj in watch.initial
                ]
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            sent = max((e.rv for e in first), default=0)

            async def send(event: Event) -> None:
                if event.plural != watch.plural:
                    return
                if watch.namespace is not None and event.namespace != watch.namespace:
                    return
                if not matches(event.object):
                    return
                line = json.dumps({"type": event.type, "object": event.object}) + "\n"
                await response.write(line.encode())

            for event in first:
                await send(event)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                async with asyncio.timeout(float(timeout) if timeout else None):
                    while True:
                        event = await queue.get()
                        if event is _END:
                            break
                        if event.rv and event.rv <= sent:
                            continue  # replayed already
                        await send(event)
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
            return response
        finally:
            self._queues.discard(queue)
