"""`/platform namespace create <team> <name>`: a namespace of a team's own, self-service,
with the defaults every service namespace gets (quota, limits, default-deny network
policy, the team's RBAC group, a service account), on the same adapter as new-service.

The namespace is `<team>-<name>`, in the cluster of the template environment (or
`--env`); policy decides whether it waits for approval (`match: {action:
namespace.create}`). A namespace that exists already is refused, never adopted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from catalog import UnknownName
from features.environments.actions import CreateNamespace, dns_label
from features.environments.command import propose
from features.kit.commands import Arguments, Command, CommandContext
from features.kit.context import Ports
from features.kit.rights import Place, require_owner_or_admin
from kernel.actions import Action, Step, StepContext
from kernel.errors import AdapterError, StepFailed, UsageError
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape
from kernel.ports.platform import AuditEntry
from kernel.ports.systems import NamespaceSpec


class NamespaceCommand(Command):
    """Create a namespace of your team's own, with the platform's defaults.

    `/platform namespace create payments sandbox` makes `payments-sandbox` in the template
    environment's cluster (`--env staging` picks another configured environment): a
    ResourceQuota (`--size small|medium|large`), default limits, a default-deny network
    policy, the team's `edit` RoleBinding and a service account. Policy may ask for
    approval first.
    """

    name = "namespace"
    usage = "create <team> <name> [--env <env>] [--size small]"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        verb = args.optional()
        if verb != "create":
            raise UsageError("Say `create`.", usage=self.full_usage())
        env = args.option("env")
        size = args.option("size")
        team = args.next("team")
        wanted = args.next("name")
        args.done()
        on_demand = ctx.catalog.model.on_demand
        try:
            ctx.catalog.team(team)
            env = env or on_demand.template
            environment = ctx.catalog.environment(env)
        except UnknownName as exc:
            raise UsageError(escape(str(exc))) from None
        dns_label(wanted, what="namespace name", max_length=62 - len(team))
        name = f"{team}-{wanted}"
        services = {
            ctx.catalog.namespace(s, e)
            for s in ctx.catalog.service_names()
            for e in ctx.catalog.environments_of(s)
        }
        if name in services:
            raise UsageError(f"{code(name)} is the namespace of a service; pick another name.")
        size = size or on_demand.default_size
        if size not in on_demand.sizes:
            raise UsageError(
                f"{code(size[:20])} is not a size; sizes: {', '.join(on_demand.sizes)}."
            )
        await require_owner_or_admin(
            ctx,
            Place(service=name, env=env, team=team),
            verb=f"create namespaces of *{escape(team)}*",
        )
        clusters = ctx.adapters.require("kubernetes")
        try:
            existing = await clusters.cluster(environment.cluster).describe_namespace(name)
        except AdapterError as exc:
            raise UsageError(escape(exc.message)) from None
        if existing is not None:
            raise UsageError(
                f"Namespace {code(name)} exists already in `{escape(environment.cluster)}`."
            )
        action = CreateNamespace(
            team=team,
            name=name,
            env=env,
            cluster=environment.cluster,
            rbac_group=ctx.catalog.kubernetes_group(team),
            quota=dict(on_demand.sizes[size]),
        )
        return await propose(ctx, action, verb="Creating")


class CreateNamespaceExecutor:
    """One step: the namespace and its defaults (the adapter new-service uses)."""

    action_type: ClassVar[type[Action]] = CreateNamespace

    def __init__(self, ports: Ports) -> None:
        self.ports = ports

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, CreateNamespace)

        async def create(context: StepContext) -> dict[str, Any]:
            spec = NamespaceSpec(
                name=action.name,
                team=action.team,
                service=action.name,
                environment=action.env,
                rbac_group=action.rbac_group,
                service_account=action.name,
                quota=dict(action.quota),
            )
            try:
                cluster = self.ports.adapters.require("kubernetes").cluster(action.cluster)
                created = await cluster.ensure_namespace(spec)
            except AdapterError as exc:
                raise StepFailed(exc.message) from None
            await self.ports.audit.record(
                AuditEntry.of(
                    context.requested_by,
                    "namespace.created",
                    action=action,
                    run_id=context.run_id,
                    detail={"namespace": action.name, "cluster": action.cluster},
                )
            )
            return {"namespace": action.name, "created": created}

        return [Step("namespace", f"Namespace {action.name} with its defaults", create)]


def executors(ports: Ports) -> list[CreateNamespaceExecutor]:
    return [CreateNamespaceExecutor(ports)]
