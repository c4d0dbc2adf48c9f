"""Provisioning a new service, one idempotent step per system: the GitLab project with
CI/CD, the namespaces, the Vault path, the PostgreSQL databases (templates that ask for
`postgres`), the catalog entry, and the announcement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from catalog import Catalog
from catalog.templates import RenderContext, TemplateError
from catalog.templates import load_templates as load_template_dir
from features.kit.context import Ports
from features.new_service.backup_schedules import ensure_schedules
from features.new_service.request import (
    CLEANUP_ACTION_ID,
    DEFAULT_REGISTRY,
    NewService,
)
from kernel.actions import Action, Step, StepContext
from kernel.blocks import message_text, section
from kernel.errors import AdapterError, StepFailed
from kernel.ids import ServiceName, SlackUserId
from kernel.mrkdwn import code, escape
from kernel.ports.systems import CiVariable, NamespaceSpec, ServiceDatabase


def _policy_name(team: str, service: str, env: str) -> str:
    """The Vault ACL policy (and Kubernetes auth role) of a service in an environment."""
    return f"{team}-{service}-{env}"


class NewServiceExecutor:
    """The steps of a NewService: GitLab, Kubernetes, Vault, Postgres, catalog, Slack."""

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
            Step("postgres", "PostgreSQL databases and their Vault roles", self.postgres),
            Step("catalog", "Catalog entry", self.catalog),
            Step("slack", "Announcement in the team channel", self.announce),
        ]
        return [step for step in steps if step.name in wanted]

    def failure_buttons(self, action: Action) -> list[tuple[str, str]]:
        return [(CLEANUP_ACTION_ID, "Clean up")]

    async def gitlab(self, context: StepContext) -> dict[str, Any]:
        action = _new_service(context.action)
        gitlab = self.ports.adapters.require("gitlab")
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
        clusters = self.ports.adapters.require("kubernetes")
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
        schedules = await ensure_schedules(
            self.ports, context, service=action.service, environments=action.environments
        )
        return {"namespaces": namespaces, "created": created, "backup_schedules": schedules}

    async def vault(self, context: StepContext) -> dict[str, Any]:
        action = _new_service(context.action)
        vault = self.ports.adapters.require("vault")
        paths: dict[str, str] = {}
        for env in action.environments:
            name = _policy_name(action.team, action.service, env)
            await context.report(f"{env}: path, policy {name}, role {name}")
            try:
                path = await vault.ensure_kv_path(action.team, action.service, env)
                db = service_database(self.ports.catalog, action, env)
                reads = [db.creds_path] if db is not None else []
                await vault.ensure_policy(name, [path], read_paths=reads)
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

    async def postgres(self, context: StepContext) -> dict[str, Any]:
        """Per environment with a database server: the database, its owner and the Vault
        role whose logins the service's Vault role may read (and nothing else)."""
        action = _new_service(context.action)
        databases: dict[str, dict[str, str]] = {}
        for env in action.environments:
            db = service_database(self.ports.catalog, action, env)
            if db is None:
                continue
            engine = self.ports.adapters.require("databases")
            await context.report(f"{env}: database {db.database} on {db.server}")
            try:
                await engine.ensure_database(db)
            except AdapterError as exc:
                raise StepFailed(f"{env}: {exc.message}") from None
            databases[env] = {
                "server": db.server,
                "database": db.database,
                "creds_path": db.creds_path,
            }
        where = ", ".join(f"{d['database']} ({env})" for env, d in databases.items())
        return {
            "databases": databases,
            "outcome": where or "no environment names a database server",
        }

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
            databases=context.outputs.get("postgres", {}).get("databases", {}),
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


def service_database(catalog: Catalog, action: NewService, env: str) -> ServiceDatabase | None:
    """The service's database in `env`, if its template asks for `postgres` and the
    environment names a database server."""
    if "postgres" not in action.steps:
        return None
    try:
        return catalog.database(action.service, env)
    except ValueError as exc:
        raise StepFailed(str(exc)) from None


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
        db = service_database(catalog, action, env)
        if db is not None:  # where the Vault Agent's DATABASE_URL points (k8s/deployment.yaml)
            variables += [
                CiVariable("DATABASE_HOST", db.host, env),
                CiVariable("DATABASE_PORT", str(db.port), env),
                CiVariable("DATABASE_NAME", db.database, env),
                CiVariable("DATABASE_SSLMODE", db.sslmode, env),
                CiVariable("DATABASE_CREDS_PATH", db.creds_path, env),
                CiVariable("DATABASE_INJECT", "true", env),
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
    databases: dict[str, dict[str, str]] | None = None,
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
    if databases:
        listed = ", ".join(
            f"`{escape(d['database'])}` ({escape(env)}, logins from `{escape(d['creds_path'])}`)"
            for env, d in databases.items()
        )
        lines.append(f"*PostgreSQL:* {listed}")
    if dashboard_url:
        lines.append(f"*Grafana:* <{dashboard_url}|{escape(dashboard_uid(action.service))}>")
    else:
        lines.append(f"*Grafana:* dashboard `{escape(dashboard_uid(action.service))}`")
    if action.description:
        lines.append(f"> {escape(action.description)}")
    body = "\n".join(lines)
    return message_text(f"{headline}\n{body}"), [section(headline), section(body)]


def _new_service(action: Action) -> NewService:
    assert isinstance(action, NewService)
    return action
