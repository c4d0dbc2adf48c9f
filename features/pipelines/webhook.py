"""GitLab pipeline events in, one living Slack message per pipeline out.

`POST /webhooks/gitlab` receives GitLab's "Pipeline Hook" webhook (docs.gitlab.com,
user/project/integrations/webhook_events.md#pipeline-events): GitLab sends the hook's
secret token as `X-Gitlab-Token`, the event name as `X-Gitlab-Event`, and a JSON body with
`object_kind: "pipeline"`, `object_attributes` (id, ref, sha, status, finished_at, url),
`project` (id, path_with_namespace, web_url) and `builds` (id, name, stage, status and,
for deploy jobs, `environment: {name, action}`). GitLab wants a fast 2xx, so the handler
does one short database transaction and leaves Slack to the outbox.

The project is mapped to a catalog service, and the pipeline becomes one message in the
service's channel (outbox key `gitlab:pipeline:<project id>:<pipeline id>`), updated in
place as statuses arrive. Each deploy job (a build with an environment) is a line of that
message, and when one succeeds or fails a reply says so in the message's thread.

GitLab may deliver hooks out of order. The message carries the progress it shows (in its
block_id); a delivery showing less progress is ignored, so a finished pipeline never goes
back to "running". A pipeline retried after it finished shows again once it finishes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from catalog import Catalog
from engine.db import Database, DatabaseUnavailable, OutboxRow
from engine.outbox import Outbox
from features.kit.webhooks import TooDeep, parse_json, read_bounded, same_secret
from kernel.blocks import message_text, section
from kernel.mrkdwn import code, escape, truncate
from kernel.ports.platform import MergeRequestHook

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
"""A pipeline event with hundreds of jobs is still far smaller."""
NOT_CONFIGURED = (
    "The GitLab webhook is not configured on this bot: set GITLAB_WEBHOOK_TOKEN and enter "
    "the same value as the webhook's Secret token in GitLab."
)
STATE_PREFIX = "gitlab-pipeline:"
"""block_id of the message's first block: `gitlab-pipeline:<rank>.<jobs progress>.<finished_at>`."""

PIPELINE_RANK = {"success": 2, "failed": 2, "canceled": 2, "skipped": 2, "running": 1}
"""How far a status is from the start; created, pending, manual and the like are 0."""
REPLY_STATUSES = frozenset({"success", "failed"})
"""Deploy job statuses told in the thread."""
EMOJI = {
    "success": ":white_check_mark:",
    "failed": ":x:",
    "running": ":arrows_counterclockwise:",
    "canceled": ":no_entry_sign:",
    "skipped": ":fast_forward:",
    "manual": ":raised_hand:",
}
WAITING_EMOJI = ":hourglass_flowing_sand:"


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Environment(_Model):
    name: str
    action: str | None = None


class Build(_Model):
    id: int
    name: str
    stage: str = ""
    status: str
    environment: Environment | None = None

    @property
    def deploys(self) -> bool:
        """A deploy job: it has an environment it starts (not one it stops or prepares)."""
        return self.environment is not None and self.environment.action in (None, "start")


class Attributes(_Model):
    id: int
    ref: str = ""
    sha: str = ""
    status: str
    finished_at: str | None = None
    url: str | None = None


class Project(_Model):
    id: int
    path_with_namespace: str
    web_url: str = ""


class PipelineEvent(_Model):
    """The parts of a Pipeline Hook body we use; GitLab sends many more."""

    object_kind: Literal["pipeline"]
    object_attributes: Attributes
    project: Project
    builds: list[Build] = []

    def progress(self) -> str:
        """How far the pipeline has got, comparable as a tuple: see `_not_older`."""
        jobs = sum(PIPELINE_RANK.get(b.status, 0) for b in self.builds)
        status = self.object_attributes.status
        return f"{PIPELINE_RANK.get(status, 0)}.{jobs}.{self.object_attributes.finished_at or ''}"


class GitLabWebhook:
    """The `POST /webhooks/gitlab` handler."""

    def __init__(
        self, db: Database, outbox: Outbox, catalog: Catalog, *, token: str | None
    ) -> None:
        self.db, self.outbox, self.catalog, self.token = db, outbox, catalog, token
        self.merge_requests: MergeRequestHook | None = None
        """Set by app.bootstrap: where merge request events go (preview environments)."""
        self._lock = asyncio.Lock()  # one pipeline write at a time in this process

    async def receive(self, request: web.Request) -> web.Response:
        """Authenticate, bound, validate, then post or update the pipeline's message."""
        if not self.token:
            return web.Response(status=503, text=NOT_CONFIGURED)
        given = request.headers.get("X-Gitlab-Token", "")
        if not same_secret(given, self.token):
            return web.Response(
                status=401, text="Missing or wrong X-Gitlab-Token for the GitLab webhook."
            )
        body = await read_bounded(request, MAX_BODY)
        if body is None:
            return web.Response(
                status=413, text=f"The body is larger than {MAX_BODY // 1024} KiB; ignored."
            )
        try:
            data = parse_json(body)
        except TooDeep as exc:
            return web.Response(status=400, text=f"The body is refused: {exc}.")
        except ValueError:
            return web.Response(status=400, text="The body is not JSON.")
        if not isinstance(data, dict):
            return web.Response(status=400, text="The body is not a JSON object.")
        kind = data.get("object_kind")
        event = request.headers.get("X-Gitlab-Event", "Pipeline Hook")
        if kind == "merge_request" and event == "Merge Request Hook" and self.merge_requests:
            return await self._merge_request(data)
        if kind != "pipeline" or event != "Pipeline Hook":
            return _ignored(f"only pipeline events are used, not {str(kind)[:40]!r}", status=200)
        try:
            pipeline = PipelineEvent.model_validate(data)
        except ValidationError as exc:
            return web.Response(status=400, text=f"Not a GitLab pipeline event: {_reason(exc)}")
        service = self.service_of(pipeline.project.path_with_namespace)
        if service is None:
            return _ignored(
                f"no catalog service for project {pipeline.project.path_with_namespace[:200]!r}",
                status=202,
            )
        try:
            async with self._lock:
                changed = await self._submit(pipeline, service)
        except DatabaseUnavailable:
            return web.Response(status=503, text="The database is unavailable; retry later.")
        if not changed:
            return _ignored("older than what the pipeline's message already shows", status=200)
        return web.json_response({"status": "queued"})

    async def _merge_request(self, data: dict[str, Any]) -> web.Response:
        """Hand a merge request event of a catalog service's project on (docs.gitlab.com
        user/project/integrations/webhook_events.md#merge-request-events)."""
        project = data.get("project")
        path = project.get("path_with_namespace") if isinstance(project, dict) else None
        service = self.service_of(path) if isinstance(path, str) else None
        if service is None or self.merge_requests is None:
            return _ignored(f"no catalog service for project {str(path)[:200]!r}", status=202)
        try:
            done = await self.merge_requests.merge_request(service, data)
        except DatabaseUnavailable:
            return web.Response(status=503, text="The database is unavailable; retry later.")
        return web.json_response({"status": done})

    def service_of(self, path: str) -> str | None:
        """The service built by this GitLab project: the one whose `repository` is the
        project's path, else the one named like the project in its owner's GitLab group."""
        for name in self.catalog.service_names():
            repository = self.catalog.service(name).repository
            if repository is not None and repository.lower() == path.lower():
                return name
        group, _, rest = path.partition("/")
        project = rest.rsplit("/", 1)[-1]
        service = self.catalog.model.services.get(project)
        if service is None or self.catalog.gitlab_group(service.owner).lower() != group.lower():
            return None
        return project

    async def _submit(self, pipeline: PipelineEvent, service: str) -> bool:
        """Write the message and replies in one transaction; False if nothing was new."""
        changed = False

        def write(session: Session, outbox: Outbox) -> None:
            nonlocal changed
            changed = self._write(session, outbox, pipeline, service)

        await self.outbox.submit(write)
        return changed

    def _write(
        self, session: Session, outbox: Outbox, pipeline: PipelineEvent, service: str
    ) -> bool:
        key = message_key(pipeline)
        if self.db.is_postgres:  # replicas take turns on one pipeline
            lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        shown = _shown_progress(session, key)
        changed = False
        if shown is None or _not_older(pipeline.progress(), than=shown):
            fallback, blocks = render(pipeline, service)
            outbox.enqueue_post_or_update(
                session,
                self.catalog.channel_of_service(service),
                key,
                text=fallback,
                blocks=blocks,
            )
            changed = True
        for build in pipeline.builds:
            if not build.deploys or build.status not in REPLY_STATUSES:
                continue
            reply_key = f"{key}:build:{build.id}:{build.status}"
            told = session.execute(
                select(OutboxRow.id).where(OutboxRow.message_key == reply_key)
            ).first()
            if told is None:
                outbox.enqueue_post(
                    session,
                    self.catalog.channel_of_service(service),
                    text=message_text(render_deploy_reply(pipeline, build)),
                    message_key=reply_key,
                    thread_key=key,
                )
                changed = True
        return changed


def message_key(pipeline: PipelineEvent) -> str:
    return f"gitlab:pipeline:{pipeline.project.id}:{pipeline.object_attributes.id}"


def render(pipeline: PipelineEvent, service: str) -> tuple[str, list[dict[str, Any]]]:
    """The pipeline's message: fallback text and blocks. Everything from GitLab is escaped."""
    attrs = pipeline.object_attributes
    status = escape(attrs.status[:40])
    emoji = EMOJI.get(attrs.status, WAITING_EMOJI)
    title = f"Pipeline #{attrs.id}"
    link = _link(attrs.url or f"{pipeline.project.web_url}/-/pipelines/{attrs.id}", title)
    lines = [
        f"{emoji} {link} of *{escape(service)}*: *{status}*",
        f"ref {code(truncate(attrs.ref, 200))} · commit {code(attrs.sha[:8])}",
    ]
    for build in sorted(pipeline.builds, key=lambda b: b.id):
        if build.deploys and build.environment is not None:
            env = escape(truncate(build.environment.name, 100))
            lines.append(f"• deploy to *{env}*: {escape(build.status[:40])}")
    fallback = f"Pipeline #{attrs.id} of {service}: {attrs.status} ({attrs.ref})"
    block = section("\n".join(lines), block_id=STATE_PREFIX + pipeline.progress()[:200])
    return message_text(escape(truncate(fallback, 300))), [block]


def render_deploy_reply(pipeline: PipelineEvent, build: Build) -> str:
    """The thread reply for a deploy job that succeeded or failed."""
    assert build.environment is not None
    env = escape(truncate(build.environment.name, 100))
    job = code(truncate(build.name, 100))
    attrs = pipeline.object_attributes
    where = f"pipeline #{attrs.id}, commit {code(attrs.sha[:8])}"
    if build.status == "success":
        return f":white_check_mark: Deployed to *{env}* by job {job} ({where})."
    return f":x: Deploy to *{env}* failed in job {job} ({where}); see the job's log in GitLab."


def _shown_progress(session: Session, key: str) -> str | None:
    """The progress the pipeline's message shows (its newest post or update), or None."""
    payload = session.execute(
        select(OutboxRow.payload)
        .where(
            OutboxRow.message_key == key,
            OutboxRow.method.in_(("chat.postMessage", "chat.update")),
        )
        .order_by(OutboxRow.id.desc())
        .limit(1)
    ).scalar()
    if payload is None:
        return None
    blocks = payload.get("blocks") or [{}]
    block_id = str(blocks[0].get("block_id", ""))
    return block_id.removeprefix(STATE_PREFIX) if block_id.startswith(STATE_PREFIX) else ""


def _not_older(progress: str, *, than: str) -> bool:
    """Whether `progress` is at least as far as `than`: pipeline status rank first, then
    the jobs' summed status ranks, then GitLab's `finished_at` (same format, so it sorts)."""

    def parts(value: str) -> tuple[int, int, str]:
        rank, _, rest = value.partition(".")
        jobs, _, finished = rest.partition(".")
        try:
            return int(rank), int(jobs), finished
        except ValueError:
            return -1, -1, ""

    return parts(progress) >= parts(than)


def _link(url: str, title: str) -> str:
    """A mrkdwn link to GitLab, or just the title when the URL is not a plain http(s) URL."""
    if not url.startswith(("https://", "http://")) or any(c in url for c in "|<> \n"):
        return f"*{title}*"
    return f"*<{url.replace('&', '&amp;')}|{title}>*"


def _reason(exc: ValidationError) -> str:
    """The first problems of a validation error, without echoing the body."""
    problems = [
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors()[:3]
    ]
    return "; ".join(problems)


def _ignored(reason: str, *, status: int) -> web.Response:
    log.info("gitlab webhook ignored", extra={"reason": reason})
    return web.json_response({"status": "ignored", "reason": reason}, status=status)


__all__ = ["GitLabWebhook", "PipelineEvent", "render"]
