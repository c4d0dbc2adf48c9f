"""The Bolt app: signature checks (HTTP mode), our middleware, our handlers."""

from __future__ import annotations

import re

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from app.slack.directory_events import DirectoryEvents
from app.slack.front_door import SlackFrontDoor
from app.slack.middleware.dedupe import EventDedupe
from app.slack.middleware.request_ids import RequestIds
from app.slack.middleware.workspace import OnlyOurWorkspace


def build_bolt_app(
    door: SlackFrontDoor,
    *,
    client: AsyncWebClient,
    signing_secret: str | None,
    socket_mode: bool,
    workspace_check_enabled: bool = True,
    event_dedupe_enabled: bool = True,
    directory_events: DirectoryEvents | None = None,
) -> AsyncApp:
    """The Bolt app: signature checks (HTTP mode), our middleware, our handlers."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=not socket_mode,
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )
    app.use(RequestIds())  # first, so every line logged for the delivery carries it
    if workspace_check_enabled:
        app.use(OnlyOurWorkspace(door))
    if event_dedupe_enabled:
        app.use(EventDedupe(door.db, door.metrics))
    app.command("/platform")(door.on_platform)
    app.action(re.compile(".+"))(door.on_button)
    app.view(re.compile(".+"))(door.on_form)
    app.options(re.compile(".+"))(door.on_options)
    app.event("app_mention")(door.on_app_mention)
    if directory_events is not None:  # user-group membership kept current (engine.directory)
        app.event("subteam_members_changed")(directory_events.on_subteam)
        app.event("subteam_updated")(directory_events.on_subteam)
    return app
