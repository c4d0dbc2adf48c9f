"""Preview environments per merge request, from GitLab's "Merge Request Hook".

The GitLab webhook (features.pipelines, which authenticates and bounds it) hands merge
request events here through the `MergeRequestHook` port. The body is GitLab's
(docs.gitlab.com user/project/integrations/webhook_events.md#merge-request-events):
`object_attributes` with `iid`, `state` (opened, closed, merged, locked), `action`,
`source_branch`, `url`, `updated_at`; `labels` as `[{"title": ...}]`; `project` with `id`
and `path_with_namespace`.

- open, with the preview label (`on_demand.preview_label`): an environment named
  `<service>-mr<iid>` at the branch's image tag (its `CI_COMMIT_REF_SLUG`), made the one
  way (limits, budget, approval policy); once ready, the merge request gets a note with
  its URL.
- merged or closed, or the label taken off: the preview is deleted; the note says so.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from features.environments.actions import PreviewOf, branch_slug
from features.environments.desk import BOT, EnvironmentDesk
from features.environments.planning import Ask, plan_create
from kernel.errors import AdapterError, ChangeRefused, UsageError

log = logging.getLogger(__name__)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Label(_Model):
    title: str


class Attributes(_Model):
    iid: int
    state: str
    action: str | None = None
    source_branch: str
    url: str = ""
    updated_at: str = ""


class Project(_Model):
    id: int
    path_with_namespace: str


class MergeRequestEvent(_Model):
    object_kind: str
    object_attributes: Attributes
    project: Project
    labels: list[Label] = []


class Previews:
    """`MergeRequestHook` on the environments desk."""

    def __init__(self, desk: EnvironmentDesk) -> None:
        self.desk = desk

    async def merge_request(self, service: str, body: dict[str, Any]) -> str:
        """Create, keep or delete the merge request's preview; what was done, in a word
        or a sentence (the webhook's answer)."""
        try:
            event = MergeRequestEvent.model_validate(body)
        except ValidationError as exc:
            return f"ignored: not a merge request event ({exc.error_count()} problems)"
        attributes = event.object_attributes
        labelled = self.desk.settings.preview_label in {label.title for label in event.labels}
        existing = await self.desk.preview_of(event.project.id, attributes.iid)
        closing = attributes.state in ("merged", "closed") or attributes.action in (
            "merge",
            "close",
        )
        if existing is not None and (closing or not labelled):
            why = (
                "merged"
                if "merge" in (attributes.state, attributes.action) or attributes.state == "merged"
                else "closed"
            )
            if not closing:
                why = "unlabelled"
            await self.desk.ports.runs.submit(
                existing.delete_action(why=why, by=BOT),
                requested_by=BOT,
                idempotency_key=f"preview-delete:{existing.id}",
            )
            return f"deleting {existing.name}"
        if existing is not None or closing or not labelled or attributes.state != "opened":
            return "nothing to do"
        preview = PreviewOf(
            project_id=event.project.id,
            project_path=event.project.path_with_namespace,
            iid=attributes.iid,
            url=attributes.url,
        )
        try:
            action = await plan_create(
                self.desk,
                Ask(
                    service=service,
                    creator=BOT,
                    name=f"{service[:30]}-mr{attributes.iid}",
                    version=branch_slug(attributes.source_branch),
                    hours=self.desk.settings.preview_ttl_hours,
                    preview=preview,
                ),
                seed=f"{event.project.id}:{attributes.iid}",
            )
            proposal = await self.desk.ports.changes.propose(
                action,
                requested_by=BOT,
                idempotency_key=f"preview:{event.project.id}:{attributes.iid}:{attributes.updated_at}",
            )
        except (UsageError, ChangeRefused) as exc:
            await self._note(preview, f"No preview environment: {_plain(exc.message)}")
            return "refused"
        if proposal.approval_id is not None:
            return "waiting for approval"
        return f"creating {action.name}"

    async def _note(self, preview: PreviewOf, body: str) -> None:
        gitlab = self.desk.ports.adapters.gitlab
        if gitlab is None:
            return
        try:
            await gitlab.note_merge_request(preview.project_id, preview.iid, body)
        except AdapterError as exc:
            log.warning("merge request note failed: %s", exc.message)


def _plain(mrkdwn: str) -> str:
    """Slack mrkdwn made fit for a GitLab note (entities back, mentions out)."""
    text = mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.replace("*", "**")
