"""`/platform env`: environments on demand, with a time to live.

create, list, extend, delete (with a confirmation), status. Creation and extension go
through the approval policy (`env.create`, `env.create-large`, `env.extend`,
`env.extend-beyond-max`); deletion only takes away, so it never waits.
"""

from __future__ import annotations

import re

from catalog import UnknownName, membership_of
from features.environments.actions import (
    ExtendEnvironment,
    ExtendEnvironmentBeyondMax,
    branch_slug,
    hours_text,
    parse_ttl,
)
from features.environments.desk import CONFIRM_BUTTON, Environment, EnvironmentDesk
from features.environments.planning import Ask, plan_create
from features.kit.commands import Arguments, Command, CommandContext
from features.kit.context import Context
from features.kit.rights import Place, require_owner_or_admin
from kernel.actions import Action
from kernel.blocks import actions, button, section
from kernel.errors import ChangeRefused, UsageError
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape

VERBS = ("create", "list", "extend", "delete", "status")


class EnvCommand(Command):
    """Environments on demand: a namespace of your own with the service deployed, for a while.

    `/platform env create checkout --version 1.4.2 --ttl 3d` makes an environment from the
    template environment (its cluster; quota, limits, default-deny network policy, team
    RBAC and service account), deploys that version, gives a URL and a Grafana link, and
    deletes it by itself when its time is up (warnings with Extend come first).
    `--branch my-feature` deploys the branch's image instead; `--name` picks the name;
    `--size small|medium|large` the quota. Your own Postgres database is not part of it yet.
    `/platform env list [team]`, `/platform env status <name>`,
    `/platform env extend <name> [--by 1d]`, `/platform env delete <name>`.
    """

    name = "env"
    usage = (
        "create <service> [--name <name>] [--version <v> | --branch <b>] [--ttl 3d] "
        "[--size small] | list [team] | status <name> | extend <name> [--by 1d] | delete <name>"
    )

    def __init__(self, desk: EnvironmentDesk) -> None:
        self.desk = desk

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        verb = args.optional()
        if verb == "create":
            return await self.create(ctx, args)
        if verb == "list":
            team = args.optional()
            args.done()
            return await self.list(ctx, team)
        if verb == "status":
            env = await self._find(args)
            args.done()
            return Reply(text=self.status_text(env))
        if verb == "extend":
            by = args.option("by")
            env = await self._find(args)
            args.done()
            hours = parse_ttl(by, max_hours=24 * 90) if by else None
            return await extend(ctx, self.desk, env, hours=hours)
        if verb == "delete":
            env = await self._find(args)
            args.done()
            return await confirm_delete(ctx, env)
        raise UsageError(
            f"Say what to do: {', '.join(code(v) for v in VERBS)}.", usage=self.full_usage()
        )

    async def create(self, ctx: CommandContext, args: Arguments) -> Reply:
        name = args.option("name")
        version = args.option("version")
        branch = args.option("branch")
        ttl = args.option("ttl")
        size = args.option("size")
        service = args.next("service")
        args.done()
        if version is not None and branch is not None:
            raise UsageError("Give `--version` or `--branch`, not both.")
        if branch is not None:
            version = branch_slug(branch)
        if version is not None:
            _check_version(version)
        owner = _owner(ctx, service)
        await require_owner_or_admin(
            ctx,
            Place(service=service, env=self.desk.settings.template, team=owner),
            verb="create environments of it",
        )
        limits = self.desk.limits(owner)
        hours = parse_ttl(ttl, max_hours=limits.max_ttl_hours) if ttl else None
        action = await plan_create(
            self.desk,
            Ask(
                service=service,
                creator=ctx.user,
                name=name,
                version=version,
                hours=hours,
                size=size,
            ),
            seed=ctx.request_key,
        )
        return await propose(ctx, action, verb="Creating")

    async def list(self, ctx: CommandContext, team: str | None) -> Reply:
        if team is not None and team not in ctx.catalog.model.teams:
            raise UsageError(f"No team named {code(team[:40])}.")
        envs = await self.desk.live(team=team)
        if not envs:
            whose = f" of *{escape(team)}*" if team else ""
            return Reply(text=f"No environments{whose} right now.")
        now = self.desk.clock.now()
        return Reply(text="\n".join(["Environments:", *(e.line(now) for e in envs)]))

    def status_text(self, env: Environment) -> str:
        now = self.desk.clock.now()
        lines = [
            f"{env.where}: *{env.state}*, {env.left(now)} "
            f"(until {env.expires_at:%Y-%m-%d %H:%M} UTC)",
            f"image {code(env.image)} · namespace {code(env.namespace)} in {code(env.cluster)}"
            f" · size {escape(env.size)} ({env.cpu:g} CPU) · created by <@{env.creator}>",
        ]
        if env.url:
            lines.append(f"URL: <{env.url}|{escape(env.url)}>")
        if env.preview:
            lines.append(f"preview of merge request !{env.preview.get('iid')}")
        if env.last_error:
            lines.append(f":warning: last error: {escape(env.last_error)}")
        return "\n".join(lines)

    async def _find(self, args: Arguments) -> Environment:
        name = args.next("name")
        env = await self.desk.named(name)
        if env is None:
            raise UsageError(
                f"No environment called {code(name[:40])}; `/platform env list` shows them."
            )
        return env


def _check_version(version: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[0-9a-f]{64}", version):
        raise UsageError(f"{code(version[:40])} is not an image tag or digest.")


def _owner(ctx: Context, service: str) -> str:
    try:
        return ctx.catalog.service(service).owner
    except UnknownName as exc:
        raise UsageError(escape(str(exc))) from None


async def may_act_on(ctx: Context, env: Environment) -> bool:
    """The creator, the owning team, or a platform admin."""
    if ctx.user == env.creator:
        return True
    email = await ctx.directory.email_of(ctx.user)
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    return me.platform_admin or env.team in me.teams


async def extend(
    ctx: Context, desk: EnvironmentDesk, env: Environment, *, hours: int | None
) -> Reply:
    """Propose an extension (the command and the Extend button): within the team's maximum
    lifetime it is `env.extend`; beyond it `env.extend-beyond-max`, for approvers."""
    if env.state not in ("ready", "failed", "creating"):
        return Reply(text=f"{env.where} is {env.state}; it can't be extended.")
    if not await may_act_on(ctx, env):
        return Reply(text=f"Only <@{env.creator}> or the *{escape(env.team)}* team may extend it.")
    limits = desk.limits(env.team)
    hours = hours or limits.default_ttl_hours
    lifetime = (env.expires_at - env.created_at).total_seconds() / 3600 + hours
    kind = ExtendEnvironmentBeyondMax if lifetime > limits.max_ttl_hours else ExtendEnvironment
    action = kind(
        env_id=env.id,
        name=env.name,
        service=env.service,
        team=env.team,
        env=env.template,
        from_generation=env.generation,
        hours=hours,
    )
    return await propose(ctx, action, verb=f"Extending by {hours_text(hours)}")


async def confirm_delete(ctx: Context, env: Environment) -> Reply:
    """Ask first: a Delete button only the asker sees."""
    if not await may_act_on(ctx, env):
        return Reply(text=f"Only <@{env.creator}> or the *{escape(env.team)}* team may delete it.")
    text = f"Delete {env.where} and everything in namespace {code(env.namespace)} now?"
    return Reply(
        text=text,
        blocks=[
            section(text),
            actions(button(CONFIRM_BUTTON, "Delete", value=env.id, style="danger")),
        ],
    )


async def delete_now(ctx: Context, env: Environment) -> Reply:
    if not await may_act_on(ctx, env):
        return Reply(text=f"Only <@{env.creator}> or the *{escape(env.team)}* team may delete it.")
    if env.state == "deleted":
        return Reply(text=f"{env.where} is gone already.")
    await ctx.runs.submit(
        env.delete_action(why="deleted", by=ctx.user),
        requested_by=ctx.user,
        idempotency_key=f"env-delete:{env.id}:{ctx.request_key}",
        reply_channel=ctx.channel,
    )
    return Reply(text=f"Deleting {env.where} now.")


async def propose(ctx: Context, action: Action, *, verb: str) -> Reply:
    try:
        proposal = await ctx.changes.propose(
            action,
            requested_by=ctx.user,
            idempotency_key=f"{action.kind}:{ctx.request_key}",
            reply_channel=ctx.channel,
        )
    except ChangeRefused as exc:
        return Reply(text=exc.message)
    if proposal.approval_id is not None:
        return Reply(
            text=f"{verb} waits for approval (rule `{escape(proposal.rule or 'policy')}`)."
        )
    return Reply(text=f"{verb}: {escape(action.summary())}. Follow the progress message.")
