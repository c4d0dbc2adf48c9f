"""What a new-service request is, and whether it can be done: the Actions, the
checks of the name, team and template, and the free-name checks against GitLab and
the catalog (inside Slack's 3 seconds).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import Field

from catalog import Catalog, UnknownName, membership_of
from catalog.load import did_you_mean
from catalog.model import NAME_PATTERN
from catalog.templates import Template, TemplateError
from catalog.templates import load_templates as load_template_dir
from features.kit.context import Context
from kernel.actions import Action
from kernel.errors import AdapterError, UsageError
from kernel.ids import SlackChannelId
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape

CALLBACK_ID = "newservice"


CLEANUP_ACTION_ID = "newservice.cleanup"


MAX_NAME = 40


MAX_DESCRIPTION = 300


MAX_VAULT_NAME = 63
"""Vault policy and role names (`<team>-<service>-<env>`) are DNS-label-like."""


DEFAULT_REGISTRY = "registry.example.com"
"""Where images are pushed, `<registry>/<team>/<service>`, as the sandbox seeds them."""


RESERVED = frozenset(
    {
        # words people and tools already mean something by
        "admin", "api", "app", "default", "help", "platform", "platform-bot", "new-service",
        "service", "services", "template", "templates", "test", "www", "all", "none", "null",
        "true", "false", "kube-system", "kube-public", "kube-node-lease",
        # Jinja keywords and names: a skeleton mentioning the service must stay readable
        "and", "or", "not", "in", "is", "if", "else", "elif", "endif", "for", "endfor",
        "block", "endblock", "extends", "include", "import", "from", "macro", "endmacro",
        "call", "endcall", "filter", "endfilter", "set", "endset", "raw", "endraw", "with",
        "endwith", "autoescape", "endautoescape", "loop", "self", "super", "caller",
        "varargs", "kwargs", "range", "namespace", "lipsum", "dict", "cycler", "joiner",
    }
)  # fmt: skip
"""Names a service may not take (template names are refused too)."""


class NewService(Action):
    """Create a service from a golden-path template, everywhere it needs to exist."""

    kind: ClassVar[str] = "new-service"

    service: str
    template: str
    team: str
    description: str = ""
    parameters: dict[str, str | int | bool | None] = Field(default_factory=dict)
    environments: tuple[str, ...]
    repository: str
    """The GitLab project path, `<team's group>/<service>`."""
    steps: tuple[str, ...] = ("gitlab", "kubernetes", "vault", "catalog", "slack")
    """The provisioning steps the template asks for (template.yml `steps`)."""

    def lock_key(self) -> str:
        return f"new-service/{self.service}"

    def summary(self) -> str:
        return f"new service {self.service} ({self.template}) for team {self.team}"

    def change_lines(self) -> list[str]:
        envs = ", ".join(self.environments)
        return [
            f"GitLab project `{escape(self.repository)}` from template `{escape(self.template)}`",
            f"namespaces and Vault paths in {escape(envs)}",
            f"catalog entry `{escape(self.service)}` owned by `{escape(self.team)}`",
        ]


class CleanUpService(Action):
    """Undo what a NewService created, in reverse, leaving nothing behind."""

    kind: ClassVar[str] = "new-service.cleanup"

    service: str
    team: str
    environments: tuple[str, ...]
    repository: str
    project_id: int | None = None
    """The GitLab project the Run made, when it got that far: Clean up deletes that very
    one, even after a new project took its path."""
    databases: tuple[str, ...] = ()
    """The PostgreSQL databases to drop (their names, as the confirmation showed them),
    one per environment in `database_environments`."""
    database_environments: tuple[str, ...] = ()

    def lock_key(self) -> str:
        return f"new-service/{self.service}"

    def summary(self) -> str:
        return f"clean up service {self.service} of team {self.team}"

    def change_lines(self) -> list[str]:
        lines = [f"delete what new-service made for `{escape(self.service)}`"]
        if self.databases:
            names = ", ".join(f"`{escape(d)}`" for d in self.databases)
            lines.append(f"drop the PostgreSQL databases {names} and everything in them")
        return lines


@dataclass(frozen=True)
class Request:
    """A new-service request as typed or submitted, not yet checked."""

    template: str
    name: str
    team: str
    description: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    environments: tuple[str, ...] | None = None
    """The catalog environments chosen for the service; None: all of them."""


FREE_CHECK_SECONDS = 2.0
"""How long the free-name checks may take: a form's answer is due within Slack's 3 s."""


def load_templates(catalog: Catalog) -> dict[str, Template]:
    """The golden-path templates of this platform, by name; UsageError if they are broken."""
    try:
        return load_template_dir(catalog.model.templates_dir)
    except TemplateError as exc:
        raise UsageError(
            "The golden-path templates of this bot are broken, so no service can be created "
            f"right now. Tell the platform team: {escape(exc.problems[0])}"
        ) from None


def name_problem(name: str, *, templates: Sequence[str] = ()) -> str | None:
    """Why `name` cannot be a service name (mrkdwn, escaped), or None if its form is fine."""
    if not name:
        return "Type a name for the service, like `invoice-api`."
    if not name.isascii():
        return "Use only the letters a-z, digits and `-` (no accents or other scripts)."
    if name != name.lower():
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:MAX_NAME].rstrip("-")
        return f"Use lowercase letters: {code(slug)}."
    if len(name) > MAX_NAME:
        return f"Use at most {MAX_NAME} characters (this one has {len(name)})."
    if not re.match(NAME_PATTERN, name):
        return (
            "Start with a letter, end with a letter or digit, and use only a-z, 0-9 and `-` "
            "in between, like `invoice-api`."
        )
    if name in RESERVED or name in templates:
        return f"{code(name)} is a reserved word; pick another name."
    return None


async def check(
    ctx: Context, request: Request, templates: dict[str, Template]
) -> tuple[dict[str, str], NewService | None]:
    """Problems by field (`template`, `name`, `team`, `description`, `param:<key>`), or
    the Action to propose when there are none. Asks GitLab whether the project exists."""
    problems: dict[str, str] = {}
    catalog = ctx.catalog
    template = templates.get(request.template)
    if template is None:
        known = ", ".join(code(t) for t in sorted(templates)) or "none are installed"
        problems["template"] = f"There is no template {code(request.template)}; use one of {known}."

    name_issue = name_problem(request.name, templates=list(templates))
    if name_issue is None and request.name in catalog.model.services:
        service = catalog.model.services[request.name]
        name_issue = (
            f"{code(request.name)} is already in the catalog (owned by `{service.owner}`)."
            if service.removal is None
            else f"{code(request.name)} is still being cleaned up; the name frees up once all "
            f"of it is gone. `/platform status {request.name}` shows what is left."
        )
    if name_issue:
        problems["name"] = name_issue

    team_issue = await _team_problem(ctx, request.team)
    if team_issue:
        problems["team"] = team_issue

    environments, env_issue = _environments(catalog, request.environments)
    if env_issue:
        problems["environments"] = env_issue

    if len(request.description) > MAX_DESCRIPTION:
        problems["description"] = f"Keep the description under {MAX_DESCRIPTION} characters."

    parameters: dict[str, str | int | bool | None] = {}
    if template is not None:
        parameters, wrong = template.parse_parameters(dict(request.parameters))
        problems.update({f"param:{key}": escape(f"{key} {text}") for key, text in wrong.items()})

    repository = ""
    if "name" not in problems and "team" not in problems:
        repository = f"{catalog.gitlab_group(request.team)}/{request.name}"
        taken = await _taken_problem(ctx, request.name, request.team, repository, environments)
        if taken:
            problems["name"] = taken
    if problems:
        return problems, None
    return {}, NewService(
        service=request.name,
        template=request.template,
        team=request.team,
        description=request.description.strip(),
        parameters=parameters,
        environments=environments,
        repository=repository,
        steps=tuple(template.steps) if template is not None else (),
    )


def _environments(
    catalog: Catalog, chosen: tuple[str, ...] | None
) -> tuple[tuple[str, ...], str | None]:
    """The chosen environments in the catalog's order (all when none were named), or why
    they cannot be."""
    known = list(catalog.model.environments)
    if chosen is None:
        return tuple(known), None
    for env in chosen:
        if env not in known:
            hint = did_you_mean(env, known)
            listed = ", ".join(code(e) for e in known)
            return (), f"There is no environment {code(env)}{hint}; choose from {listed}."
    if not chosen:
        return (), "Choose at least one environment for the service."
    return tuple(env for env in known if env in chosen), None


async def _team_problem(ctx: Context, team: str) -> str | None:
    if not team:
        return "Choose the team that will own the service."
    try:
        ctx.catalog.team(team)
    except UnknownName as exc:
        return escape(str(exc))
    # inside a trigger_id or view_submission window: ask Slack only if it can matter
    email = await ctx.directory.email_of(ctx.user) if ctx.catalog.lists_emails() else None
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    if team not in me.teams and not me.platform_admin:
        return (
            f"You are not in team `{team}`. Ask someone in it (or a platform admin) to create "
            "the service, or choose your own team."
        )
    return None


async def _taken_problem(
    ctx: Context, name: str, team: str, repository: str, environments: Sequence[str]
) -> str | None:
    """Whether the derived names are too long, or the project or a namespace exists (Clean
    up deletes what the Run made, so it must not adopt what someone else made). A project
    GitLab marked for deletion, or a namespace still Terminating, holds the name until it is
    gone: said so, with when."""
    longest = max((f"{team}-{name}-{env}" for env in environments), key=len, default="")
    if len(longest) > MAX_VAULT_NAME:
        room = len(name) - (len(longest) - MAX_VAULT_NAME)
        return (
            f"With team and environment, {code(longest)} is too long for Vault; "
            f"use at most {room} characters for the name."
        )
    gitlab = ctx.adapters.gitlab
    if gitlab is None:
        return (
            "GitLab is not configured on this bot (GITLAB_URL and GITLAB_TOKEN), "
            "so it cannot create services."
        )
    clusters = ctx.adapters.kubernetes
    namespaces = [(env, ctx.catalog.namespace(name, env)) for env in environments]
    try:
        # The form waits for this answer inside Slack's 3 seconds: reads only, bounded.
        async with asyncio.timeout(FREE_CHECK_SECONDS):
            project = await gitlab.find_project(repository)
            if project is not None and project.marked_for_deletion_on is not None:
                return (
                    f"GitLab marked {code(repository)} for deletion on "
                    f"{project.marked_for_deletion_on:%Y-%m-%d} and holds the name until it "
                    "removes it (30 days later by default); pick another name or wait."
                )
            if project is not None:
                return f"GitLab already has a project {code(repository)}; pick another name."
            if clusters is None:
                return None
            found = await asyncio.gather(
                *(
                    clusters.cluster(ctx.catalog.environment(env).cluster).describe_namespace(ns)
                    for env, ns in namespaces
                )
            )
    except AdapterError as exc:
        return f"Could not check whether {code(name)} is free: {escape(exc.message)}"
    except TimeoutError:
        return (
            f"GitLab or Kubernetes did not say within {FREE_CHECK_SECONDS:g} s whether "
            f"{code(name)} is free; nothing was created. Submit again in a moment."
        )
    for (env, namespace), state in zip(namespaces, found, strict=True):
        if state is not None and state.terminating:
            since = f" since {state.deleting_since:%H:%M} UTC" if state.deleting_since else ""
            waits = f" It waits for: {escape(state.waiting_for)}." if state.waiting_for else ""
            return (
                f"The namespace {code(namespace)} in {escape(env)} is still being deleted "
                f"(Terminating{since}); the name frees up once Kubernetes has removed it, "
                f"usually within minutes.{waits}"
            )
        if state is not None:
            return f"The namespace {code(namespace)} already exists in {escape(env)}."
    return None


async def propose(ctx: Context, action: NewService, *, idempotency_key: str, channel: str) -> Reply:
    """Propose the Run; ChangeRefused (e.g. the same name is being created) goes up."""
    proposal = await ctx.changes.propose(
        action,
        requested_by=ctx.user,
        idempotency_key=f"new-service:{idempotency_key}",
        reply_channel=SlackChannelId(channel) if channel else None,
    )
    if proposal.approval_id is not None:
        rule = escape(proposal.rule or "approval policy")
        return Reply(text=f"Creating {code(action.service)} waits for approval ({rule}).")
    return Reply(
        text=f"Creating {code(action.service)} from `{escape(action.template)}`; "
        "follow the progress message."
    )
