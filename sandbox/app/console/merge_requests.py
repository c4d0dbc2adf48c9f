"""The console's hand on GitLab's merge requests: `/mr open|label|merge|close`, for
preview environments.

Each changes the merge request in the GitLab stand-in (as a person would in GitLab's UI)
and then delivers the "Merge Request Hook" GitLab would send to the bot's webhook, with
its secret token (docs.gitlab.com user/project/integrations/webhook_events.md). The
webhook's answer and the merge request's newest note are printed.

  /mr open <service> <branch> [label]   open one (the project is made if missing)
  /mr label <iid> <label|->              set its only label (`-`: none)
  /mr merge <iid>  /  /mr close <iid>
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import aiohttp

from sandbox.app.stack import GITLAB_GROUPS, GITLAB_TOKEN, GITLAB_WEBHOOK_TOKEN, SandboxStack

USAGE = "Usage: /mr open <service> <branch> [label] | /mr label|merge|close <iid>"
HELP = """\
Merge requests (preview environments):
  /mr open <service> <branch> [label]   open a merge request, GitLab sends its webhook
  /mr label <iid> <label|->  /mr merge <iid>  /mr close <iid>"""


class MergeRequestError(Exception):
    """A /mr line that can't be done; the message says why."""


class Console(Protocol):
    stack: SandboxStack

    def say(self, line: str = "") -> None: ...

    async def _show_new(self) -> None: ...


class MergeRequests:
    """The merge requests the console opened: iid -> (project path)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.projects: dict[int, str] = {}
        self.updates = 0

    async def command(self, text: str) -> None:
        words = text.split()
        if not words:
            raise MergeRequestError(USAGE)
        verb, args = words[0], words[1:]
        gitlab = self.console.stack.gitlab
        if verb == "open" and len(args) in (2, 3):
            path = await self._project(args[0])
            labels = args[2:]
            mr = gitlab.open_merge_request(path, source_branch=args[1], labels=labels)
            self.projects[int(mr["iid"])] = path
            action = "open"
        elif verb in ("label", "merge", "close") and args and args[0].isdigit():
            iid = int(args[0])
            path = self.projects.get(iid, "")
            if not path:
                raise MergeRequestError(f"No merge request !{iid} was opened here.")
            if verb == "label":
                if len(args) != 2:
                    raise MergeRequestError(USAGE)
                labels = [] if args[1] == "-" else [args[1]]
                mr, action = gitlab.set_merge_request(path, iid, labels=labels), "update"
            else:
                state = "merged" if verb == "merge" else "closed"
                mr, action = gitlab.set_merge_request(path, iid, state=state), verb
        else:
            raise MergeRequestError(USAGE)
        answer = await self._deliver(gitlab.project(path), mr, action)
        self.console.say(
            f"(GitLab: !{mr['iid']} {mr['state']}, labels {mr['labels']}; "
            f"the webhook answered {answer})"
        )
        await self.console._show_new()
        notes = gitlab.notes(path, int(mr["iid"]))
        if notes:
            self.console.say(f"(newest note on !{mr['iid']}: {notes[-1]['body']})")

    async def _project(self, service: str) -> str:
        """`<team group>/<service>`, made in the stand-in if missing."""
        owner = self.console.stack.bot.ports.catalog.model.services.get(service)
        if owner is None:
            raise MergeRequestError(f"No service named {service!r}.")
        group = next((g for g in GITLAB_GROUPS if g[1] == owner.owner), None)
        if group is None:
            raise MergeRequestError(f"No GitLab group for team {owner.owner!r}.")
        path = f"{group[1]}/{service}"
        if not self._exists(path):
            url = f"{self.console.stack.gitlab.base_url}/api/v4/projects"
            data = {"name": service, "path": service, "namespace_id": group[0]}
            async with (
                aiohttp.ClientSession(headers={"PRIVATE-TOKEN": GITLAB_TOKEN}) as http,
                http.post(url, json=data) as response,
            ):
                if response.status != 201:
                    raise MergeRequestError(f"GitLab refused the project: {await response.text()}")
        return path

    def _exists(self, path: str) -> bool:
        try:
            self.console.stack.gitlab.project(path)
        except KeyError:
            return False
        return True

    async def _deliver(self, project: dict[str, Any], mr: dict[str, Any], action: str) -> str:
        self.updates += 1
        body = {
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "project": {
                "id": project["id"],
                "path_with_namespace": project["path_with_namespace"],
                "web_url": project["web_url"],
            },
            "object_attributes": {
                "iid": mr["iid"],
                "title": mr["title"],
                "state": mr["state"],
                "action": action,
                "source_branch": mr["source_branch"],
                "target_branch": mr["target_branch"],
                "url": mr["web_url"],
                "updated_at": f"console-{self.updates}",
            },
            "labels": [{"title": label} for label in mr["labels"]],
        }
        headers = {
            "Content-Type": "application/json",
            "X-Gitlab-Event": "Merge Request Hook",
            "X-Gitlab-Token": GITLAB_WEBHOOK_TOKEN,
        }
        url = f"http://127.0.0.1:{self.console.stack.bot.port}/webhooks/gitlab"
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data=json.dumps(body), headers=headers) as response,
        ):
            return f"{response.status} {await response.text()}"
