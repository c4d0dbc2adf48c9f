"""`/platform new-service`: the golden path from a modal to a provisioned service skeleton.

A developer picks a template, a name and a team (in a modal, or typed); we check the
name and their right to create it, then propose one `NewService` Action. Its Run
creates, each step checking first what already exists: the GitLab project with the
rendered skeleton in one commit, CI/CD variables and a protected default branch; a
namespace per environment (quota, limits, default-deny network policy, role binding,
service account); a Vault path, policy and Kubernetes auth role per environment; the
catalog entry; and a message in the team's channel with the links. When the Run fails,
its progress message offers Retry and Clean up (`CleanUpService`: the same steps undone
in reverse, each tolerating what is already gone).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import Field

from adapters.protocols import AdapterError, CiVariable, NamespaceSpec
from bot.domain import (
    Action,
    ChangeRefused,
    Click,
    Reply,
    RunId,
    ServiceName,
    SlackChannelId,
    SlackUserId,
    Step,
    StepContext,
    StepFailed,
    Submission,
    UsageError,
)
from bot.mrkdwn import code, escape
from bot.ports import Button, Context, Form, Ports
from catalog import Catalog, UnknownName, membership_of
from catalog.model import NAME_PATTERN
from catalog.templates import Parameter, RenderContext, Template, TemplateError
from catalog.templates import load_templates as load_template_dir
from commands.base import Arguments, Command, CommandContext
from commands.run_buttons import is_requester_or_admin

A = TypeVar("A")

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


# -- the Actions --------------------------------------------------------------------------


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

    def lock_key(self) -> str:
        return f"new-service/{self.service}"

    def summary(self) -> str:
        return f"clean up service {self.service} of team {self.team}"


# -- what people ask for, and checking it -------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A new-service request as typed or submitted, not yet checked."""

    template: str
    name: str
    team: str
    description: str = ""
    parameters: dict[str, str] = field(default_factory=dict)


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
        owner = catalog.model.services[request.name].owner
        name_issue = f"{code(request.name)} is already in the catalog (owned by `{owner}`)."
    if name_issue:
        problems["name"] = name_issue

    team_issue = await _team_problem(ctx, request.team)
    if team_issue:
        problems["team"] = team_issue

    if len(request.description) > MAX_DESCRIPTION:
        problems["description"] = f"Keep the description under {MAX_DESCRIPTION} characters."

    parameters: dict[str, str | int | bool | None] = {}
    if template is not None:
        parameters, wrong = template.parse_parameters(dict(request.parameters))
        problems.update({f"param:{key}": escape(f"{key} {text}") for key, text in wrong.items()})

    repository = ""
    if "name" not in problems and "team" not in problems:
        repository = f"{catalog.gitlab_group(request.team)}/{request.name}"
        taken = await _taken_problem(ctx, request.name, request.team, repository)
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
        environments=tuple(catalog.model.environments),
        repository=repository,
        steps=tuple(template.steps) if template is not None else (),
    )


async def _team_problem(ctx: Context, team: str) -> str | None:
    if not team:
        return "Choose the team that will own the service."
    try:
        ctx.catalog.team(team)
    except UnknownName as exc:
        return escape(str(exc))
    email = await ctx.directory.email_of(ctx.user)
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    if team not in me.teams and not me.platform_admin:
        return (
            f"You are not in team `{team}`. Ask someone in it (or a platform admin) to create "
            "the service, or choose your own team."
        )
    return None


async def _taken_problem(ctx: Context, name: str, team: str, repository: str) -> str | None:
    """Whether the derived names are too long, or the project or a namespace exists (Clean
    up deletes what the Run made, so it must not adopt what someone else made)."""
    environments = list(ctx.catalog.model.environments)
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
            if await gitlab.find_project(repository) is not None:
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
        if state is not None:
            return f"The namespace {code(namespace)} already exists in {escape(env)}."
    return None


# -- the command ----------------------------------------------------------------------------


class NewServiceCommand(Command):
    """Create a new service from a golden-path template: repository, namespaces, secrets.

    `/platform new-service` opens a form. Or type it all:
    `/platform new-service <template> <name> --team <team> [--description "..."]
    [--param key=value ...]`. You get a GitLab project with the template's skeleton and
    CI/CD, a Kubernetes namespace and a Vault path per environment, and a catalog entry;
    progress is shown in one message. If it fails, Retry or Clean up.
    """

    name = "new-service"
    usage = '[<template> <name> --team <team> [--description "..."] [--param key=value ...]]'

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        templates = load_templates(ctx.catalog)
        template = args.optional()
        if template is None:
            args.done()
            view = await modal(ctx, templates)
            await ctx.ports.modals.open(ctx.request_key, view)
            return Reply(text="Fill in the form that just opened to create the service.")
        name = args.next("name")
        team = args.option("team")
        if team is None:
            raise UsageError(
                "Say which team owns it: `--team &lt;team&gt;`.", usage=self.full_usage()
            )
        description = args.option("description") or ""
        raw: dict[str, str] = {}
        while (pair := args.option("param")) is not None:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UsageError(
                    f"{code(pair)} is not `key=value`; write e.g. `--param port=8080`.",
                    usage=self.full_usage(),
                )
            raw[key] = value
        args.done()
        request = Request(template, name, team, description, raw)
        problems, action = await check(ctx, request, templates)
        if action is None:
            lines = [
                f"• *{escape(key.removeprefix('param:'))}*: {text}"
                for key, text in problems.items()
            ]
            raise UsageError("Nothing was created:\n" + "\n".join(lines), usage=self.full_usage())
        try:
            return await _propose(ctx, action, idempotency_key=ctx.request_key, channel=ctx.channel)
        except ChangeRefused as refused:
            return Reply(text=refused.message)


async def _propose(
    ctx: Context, action: NewService, *, idempotency_key: str, channel: str
) -> Reply:
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


# -- the modal ------------------------------------------------------------------------------


def _param_block_id(template: str, key: str) -> str:
    return f"param.{template}.{key}"


async def modal(ctx: Context, templates: dict[str, Template]) -> dict[str, Any]:
    """The form: template, name, team, description, and every template's parameters
    (optional in Slack; the chosen template's are checked on submit)."""
    email = await ctx.directory.email_of(ctx.user)
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    teams = ctx.catalog.team_names()
    team_options = [_option(t, t) for t in teams]
    team_select: dict[str, Any] = {
        "type": "static_select",
        "action_id": "team",
        "placeholder": _plain("Choose a team"),
        "options": team_options,
    }
    if me.teams:
        team_select["initial_option"] = _option(me.teams[0], me.teams[0])
    blocks: list[dict[str, Any]] = [
        _input(
            "template",
            "Template",
            {
                "type": "static_select",
                "action_id": "template",
                "placeholder": _plain("Choose a golden path"),
                "options": [_option(t.title[:75], name) for name, t in sorted(templates.items())],
            },
        ),
        _input(
            "name",
            "Service name",
            {
                "type": "plain_text_input",
                "action_id": "name",
                "max_length": MAX_NAME,
                "placeholder": _plain("invoice-api"),
            },
            hint="Lowercase letters, digits and '-', at most 40 characters.",
        ),
        _input("team", "Owner team", team_select),
        _input(
            "description",
            "Description",
            {
                "type": "plain_text_input",
                "action_id": "description",
                "multiline": True,
                "max_length": MAX_DESCRIPTION,
            },
            optional=True,
        ),
    ]
    for name, template in sorted(templates.items()):
        for parameter in template.parameters:
            blocks.append(_parameter_input(name, template, parameter))
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain("New service"),
        "submit": _plain("Create"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"channel": ctx.channel}),
        "blocks": blocks[:100],
    }


def _parameter_input(
    template_name: str, template: Template, parameter: Parameter
) -> dict[str, Any]:
    label = f"{parameter.title or parameter.name} ({template.title})"
    default = None if parameter.default is None else str(parameter.default)
    element: dict[str, Any]
    if parameter.enum:
        element = {
            "type": "static_select",
            "action_id": "value",
            "options": [_option(str(v), str(v)) for v in parameter.enum],
        }
        if default is not None:
            element["initial_option"] = _option(default, default)
    else:
        element = {"type": "plain_text_input", "action_id": "value"}
        if default is not None:
            element["initial_value"] = default
    return _input(
        _param_block_id(template_name, parameter.name),
        label,
        element,
        optional=True,
        hint=parameter.help or None,
    )


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": _plain(text[:75]), "value": value[:150]}


def _input(
    block_id: str,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool = False,
    hint: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label[:2000]),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = _plain(hint[:2000])
    return block


class NewServiceForm(Form):
    """The new-service modal: check every field, then propose the Run."""

    callback_id = CALLBACK_ID

    async def submit(self, ctx: Context, submission: Submission) -> dict[str, str] | None:
        values = submission.values
        template = str(values.get("template") or "")
        prefix = f"param.{template}."
        request = Request(
            template=template,
            name=str(values.get("name") or "").strip(),
            team=str(values.get("team") or ""),
            description=str(values.get("description") or ""),
            parameters={
                block_id.removeprefix(prefix): str(value)
                for block_id, value in values.items()
                if block_id.startswith(prefix) and value not in (None, "")
            },
        )
        templates = load_templates(ctx.catalog)
        problems, action = await check(ctx, request, templates)
        if action is None:
            return {_block_id(template, key): _plain_text(text) for key, text in problems.items()}
        channel = _reply_channel(submission.private_metadata) or ctx.user
        try:
            await _propose(
                ctx, action, idempotency_key=f"view:{submission.view_id}", channel=channel
            )
        except ChangeRefused as refused:  # e.g. the same name is being created right now
            return {"name": _plain_text(refused.message)}
        return None


def _block_id(template: str, key: str) -> str:
    if key.startswith("param:"):
        return _param_block_id(template, key.removeprefix("param:"))
    return key


def _plain_text(mrkdwn: str) -> str:
    """Form errors are plain text: drop mrkdwn's backticks and entities."""
    text = mrkdwn.replace("`", "'").replace("*", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")[:150]


def _reply_channel(private_metadata: str) -> str | None:
    try:
        channel = json.loads(private_metadata or "{}").get("channel")
    except (ValueError, AttributeError):
        return None
    return str(channel) if channel else None


# -- provisioning -------------------------------------------------------------------------


def _policy_name(team: str, service: str, env: str) -> str:
    """The Vault ACL policy (and Kubernetes auth role) of a service in an environment."""
    return f"{team}-{service}-{env}"


def _need(adapter: A | None, name: str, variables: str) -> A:
    """The adapter, or a failed step saying which settings configure it."""
    if adapter is None:
        raise StepFailed(f"{name} is not configured on this bot (set {variables}).")
    return adapter


class NewServiceExecutor:
    """The steps of a NewService: GitLab, Kubernetes, Vault, catalog, Slack."""

    action_type = NewService

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    def steps(self, action: Action) -> Sequence[Step]:
        """The template's steps, always in this order."""
        wanted = _new_service(action).steps
        steps = [
            Step("gitlab", "GitLab project, skeleton and CI/CD", self.gitlab),
            Step("kubernetes", "Kubernetes namespaces", self.kubernetes),
            Step("vault", "Vault paths, policies and roles", self.vault),
            Step("catalog", "Catalog entry", self.catalog),
            Step("slack", "Announcement in the team channel", self.announce),
        ]
        return [step for step in steps if step.name in wanted]

    def failure_buttons(self, action: Action) -> list[tuple[str, str]]:
        return [(CLEANUP_ACTION_ID, "Clean up")]

    async def gitlab(self, context: StepContext) -> dict[str, Any]:
        action = _new_service(context.action)
        gitlab = _need(self.ports.adapters.gitlab, "GitLab", "GITLAB_URL and GITLAB_TOKEN")
        catalog = self.ports.catalog
        group = catalog.gitlab_group(action.team)
        files = render_skeleton(catalog, action)
        try:
            project = await gitlab.ensure_project(
                group=group, name=action.service, description=action.description
            )
            await context.report(f"committing {len(files)} files to {project.path_with_namespace}")
            commit = await gitlab.commit_files(
                project.id,
                branch=project.default_branch,
                message=f"{action.service}: skeleton from the {action.template} template",
                files=files,
            )
            await context.report("setting CI/CD variables")
            changed = await gitlab.ensure_variables(project.id, ci_variables(catalog, action))
            protected = await gitlab.protect_branch(project.id, project.default_branch)
        except AdapterError as exc:
            raise StepFailed(exc.message) from None
        return {
            "project_id": project.id,
            "repository": project.path_with_namespace,
            "web_url": project.web_url,
            "default_branch": project.default_branch,
            "commit": commit,
            "files": len(files),
            "variables_changed": changed,
            "protected_now": protected,
        }

    async def kubernetes(self, context: StepContext) -> dict[str, Any]:
        action = _new_service(context.action)
        clusters = _need(self.ports.adapters.kubernetes, "Kubernetes", "KUBECONFIG")
        catalog = self.ports.catalog
        namespaces: dict[str, str] = {}
        created: dict[str, list[str]] = {}
        for env in action.environments:
            spec = NamespaceSpec(
                name=catalog.namespace(action.service, env),
                team=action.team,
                service=action.service,
                environment=env,
                rbac_group=catalog.kubernetes_group(action.team),
                service_account=action.service,
            )
            await context.report(f"namespace {spec.name}")
            try:
                cluster = clusters.cluster(catalog.environment(env).cluster)
                created[env] = await cluster.ensure_namespace(spec)
            except AdapterError as exc:
                raise StepFailed(f"{env}: {exc.message}") from None
            namespaces[env] = spec.name
        return {"namespaces": namespaces, "created": created}

    async def vault(self, context: StepContext) -> dict[str, Any]:
        action = _new_service(context.action)
        vault = _need(self.ports.adapters.vault, "Vault", "VAULT_ADDR and VAULT_TOKEN")
        paths: dict[str, str] = {}
        for env in action.environments:
            name = _policy_name(action.team, action.service, env)
            await context.report(f"{env}: path, policy {name}, role {name}")
            try:
                path = await vault.ensure_kv_path(action.team, action.service, env)
                await vault.ensure_policy(name, [path])
                await vault.ensure_kubernetes_role(
                    name,
                    service_account=action.service,
                    namespace=self.ports.catalog.namespace(action.service, env),
                    policies=[name],
                )
            except AdapterError as exc:
                raise StepFailed(f"{env}: {exc.message}") from None
            paths[env] = path
        return {"paths": paths}

    async def catalog(self, context: StepContext) -> dict[str, Any]:
        action = _new_service(context.action)
        definition = {
            "owner": action.team,
            "environments": list(action.environments),
            "description": action.description,
            "repository": action.repository,
            "grafana_dashboard": dashboard_uid(action.service),
        }
        new = await self.ports.services.register(
            ServiceName(action.service), definition, by=context.requested_by
        )
        return {"registered": action.service, "new": new}

    async def announce(self, context: StepContext) -> dict[str, Any]:
        action = _new_service(context.action)
        catalog = self.ports.catalog
        gitlab = context.outputs.get("gitlab", {})
        web_url: str | None = gitlab.get("web_url")
        pipeline = f"{web_url}/-/pipelines" if web_url else None
        code_host = self.ports.adapters.gitlab
        if code_host is not None and gitlab.get("project_id"):
            try:  # the newest pipeline, if the commit started one; the list page otherwise
                found = await code_host.pipelines(int(gitlab["project_id"]))
            except AdapterError:
                found = []
            if found:
                pipeline = found[0].web_url
        channel = catalog.team(action.team).slack_channel
        text, blocks = announcement(
            catalog,
            action,
            requested_by=context.requested_by,
            repository_url=web_url,
            pipeline_url=pipeline,
            vault_paths=context.outputs.get("vault", {}).get("paths", {}),
            dashboard_url=self._dashboard_url(action.service),
        )
        await self.ports.messenger.post(
            channel, text=text, blocks=blocks, key=f"new-service:{context.run_id}"
        )
        return {"channel": channel}

    def _dashboard_url(self, service: str) -> str | None:
        grafana = self.ports.adapters.grafana
        if grafana is None:
            return None
        return grafana.dashboard(dashboard_uid(service), variables={"service": service})


def dashboard_uid(service: str) -> str:
    """The Grafana dashboard a new service gets (its skeleton's catalog-info names it)."""
    return f"{service}-overview"


def ci_variables(catalog: Catalog, action: NewService) -> list[CiVariable]:
    """What the skeleton's .gitlab-ci.yml reads: the service, and per environment where
    to deploy and which Vault role to use. No secrets: those stay in Vault."""
    variables = [
        CiVariable("SERVICE_NAME", action.service),
        CiVariable("TEAM", action.team),
    ]
    for env in action.environments:
        name = _policy_name(action.team, action.service, env)
        variables += [
            CiVariable("KUBE_NAMESPACE", catalog.namespace(action.service, env), env),
            CiVariable("KUBE_CONTEXT", catalog.environment(env).cluster, env),
            CiVariable("VAULT_ROLE", name, env),
            CiVariable("VAULT_PATH", f"{action.team}/{action.service}/{env}", env),
        ]
    return variables


def render_skeleton(catalog: Catalog, action: NewService) -> dict[str, str]:
    """The template's files for this service; the same Action always renders the same."""
    try:
        template = load_template_dir(catalog.model.templates_dir).get(action.template)
        if template is None:
            raise StepFailed(f"the template {action.template} is no longer installed")
        return template.render(
            RenderContext(
                service=action.service,
                team=action.team,
                description=action.description,
                environments=action.environments,
                gitlab_group=catalog.gitlab_group(action.team),
                slack_channel=catalog.team(action.team).slack_channel,
                grafana_dashboard=dashboard_uid(action.service),
                registry=f"{DEFAULT_REGISTRY}/{action.team}",
                parameters=dict(action.parameters),
                manual_environments=tuple(
                    env for env in action.environments if catalog.environment(env).risk == "high"
                ),
            )
        )
    except TemplateError as exc:
        raise StepFailed(
            f"the {action.template} template did not render: {exc.problems[0]}"
        ) from None


def announcement(
    catalog: Catalog,
    action: NewService,
    *,
    requested_by: SlackUserId,
    repository_url: str | None,
    pipeline_url: str | None,
    vault_paths: dict[str, str],
    dashboard_url: str | None,
) -> tuple[str, list[dict[str, Any]]]:
    """The team channel's message: what was created, with links."""
    headline = (
        f":rocket: New service {code(action.service)} ({escape(action.template)}), "
        f"created by <@{requested_by}>"
    )
    lines = []
    if repository_url and pipeline_url:
        lines.append(f"*Repository:* <{repository_url}|{escape(action.repository)}>")
        lines.append(f"*Pipelines:* <{pipeline_url}|CI/CD>")
    namespaces = ", ".join(
        f"`{escape(catalog.namespace(action.service, env))}` ({escape(env)})"
        for env in action.environments
    )
    lines.append(f"*Namespaces:* {namespaces}")
    vault = ", ".join(f"`secret/{escape(p)}`" for p in vault_paths.values())
    lines.append(f"*Vault:* {vault or 'none'}")
    if dashboard_url:
        lines.append(f"*Grafana:* <{dashboard_url}|{escape(dashboard_uid(action.service))}>")
    else:
        lines.append(f"*Grafana:* dashboard `{escape(dashboard_uid(action.service))}`")
    if action.description:
        lines.append(f"> {escape(action.description)}")
    body = "\n".join(lines)
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline[:3000]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:3000]}},
    ]
    return f"{headline}\n{body}", blocks


def _new_service(action: Action) -> NewService:
    assert isinstance(action, NewService)
    return action


# -- cleaning up --------------------------------------------------------------------------


class CleanUpExecutor:
    """The steps of a CleanUpService: what NewService made, undone in reverse order."""

    action_type = CleanUpService

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    def steps(self, action: Action) -> Sequence[Step]:
        return [
            Step("catalog", "Remove the catalog entry", self.catalog),
            Step("vault", "Delete Vault paths, policies and roles", self.vault),
            Step("kubernetes", "Delete Kubernetes namespaces", self.kubernetes),
            Step("gitlab", "Delete the GitLab project", self.gitlab),
        ]

    async def catalog(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        try:
            existed = await self.ports.services.unregister(
                ServiceName(action.service), by=context.requested_by
            )
        except ValueError as exc:  # defined in platform.yml: never ours to remove
            raise StepFailed(str(exc)) from None
        return {"removed": existed}

    async def vault(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        vault = _need(self.ports.adapters.vault, "Vault", "VAULT_ADDR and VAULT_TOKEN")
        for env in action.environments:
            name = _policy_name(action.team, action.service, env)
            await context.report(f"{env}: path, policy and role {name}")
            try:
                await vault.delete_service(action.team, action.service, env, policy=name, role=name)
            except AdapterError as exc:
                raise StepFailed(f"{env}: {exc.message}") from None
        return {"environments": list(action.environments)}

    async def kubernetes(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        clusters = _need(self.ports.adapters.kubernetes, "Kubernetes", "KUBECONFIG")
        deleted = []
        for env in action.environments:
            namespace = self.ports.catalog.namespace(action.service, env)
            await context.report(f"namespace {namespace}")
            try:
                cluster = clusters.cluster(self.ports.catalog.environment(env).cluster)
                if await cluster.delete_namespace(namespace):
                    deleted.append(namespace)
            except AdapterError as exc:
                raise StepFailed(f"{env}: {exc.message}") from None
        return {"deleted": deleted}

    async def gitlab(self, context: StepContext) -> dict[str, Any]:
        action = _clean_up(context.action)
        gitlab = _need(self.ports.adapters.gitlab, "GitLab", "GITLAB_URL and GITLAB_TOKEN")
        try:
            existed = await gitlab.delete_project(action.repository)
        except AdapterError as exc:
            raise StepFailed(exc.message) from None
        return {"deleted": action.repository if existed else None}


def _clean_up(action: Action) -> CleanUpService:
    assert isinstance(action, CleanUpService)
    return action


class CleanUpButton(Button):
    """Clean up after a failed new service: the requester or a platform admin may."""

    action_id = CLEANUP_ACTION_ID

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        run_id = RunId(click.value[:64])
        runs = ctx.ports.run_control
        action = await runs.action(run_id)
        if not isinstance(action, NewService):
            return Reply(text="That is not a new-service Run; nothing was cleaned up.")
        requester = await runs.requested_by(run_id)
        if requester is None or not await is_requester_or_admin(ctx, requester, click.user):
            return Reply(
                text=f"Only <@{requester}>, who asked for this service, or a platform admin "
                "may clean it up."
            )
        # Closing the failed Run first (conditional on it being failed) takes its Retry
        # away, so nobody provisions again what is being cleaned up.
        if not await runs.close(run_id, by=click.user, reason="closed to clean up"):
            return Reply(text="This Run is not failed (any more), so there is nothing to clean up.")
        cleanup = CleanUpService(
            service=action.service,
            team=action.team,
            environments=action.environments,
            repository=action.repository,
        )
        try:
            proposal = await ctx.changes.propose(
                cleanup,
                requested_by=click.user,
                idempotency_key=f"new-service.cleanup:{run_id}",
                reply_channel=click.channel,
            )
        except ChangeRefused as refused:
            return Reply(text=refused.message)
        if not proposal.created:
            return Reply(
                text="Clean up was already asked for; see its progress message (and its Retry)."
            )
        return Reply(text=f"Cleaning up {code(action.service)}; follow the progress message.")


def executors(ports: Ports) -> list[NewServiceExecutor | CleanUpExecutor]:
    """The executors of this module's Actions, with the ports they use."""
    return [NewServiceExecutor(ports), CleanUpExecutor(ports)]
