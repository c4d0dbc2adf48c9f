"""Where a release goes: the service in one environment, as the catalog says, and who may
change it; plus checking what people type (versions, revisions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from catalog import UnknownName, membership_of
from catalog.model import Environment
from features.kit.context import Context
from features.releases.actions import Backend
from kernel.errors import UsageError
from kernel.mrkdwn import code, escape

VERSION_PATTERN = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|sha256:[0-9a-f]{64})$")
"""A version is an image tag (Docker's tag grammar) or an image digest; nothing else."""


@dataclass(frozen=True)
class Target:
    """Where a service runs in one environment, as the catalog says."""

    service: str
    env: str
    environment: Environment
    namespace: str
    selector: str
    application: str

    @property
    def backend(self) -> Backend:
        return self.environment.backend

    @property
    def where(self) -> str:
        return f"`{escape(self.service)}` in `{escape(self.env)}`"


class AutoSyncOn(Exception):
    """Argo CD would refuse this rollback: automated sync is on. Offer to turn it off."""

    def __init__(self, target: Target, to_revision: int) -> None:
        super().__init__(f"auto-sync is on for {target.application}")
        self.target = target
        self.to_revision = to_revision


def lookup_target(ctx: Context, service: str, env: str) -> Target:
    """Where `service` runs in `env`; UsageError (with did-you-mean) if it does not."""
    try:
        entry = ctx.catalog.service(service)
        environment = ctx.catalog.environment(env)
    except UnknownName as exc:
        raise UsageError(escape(str(exc))) from None
    if env not in entry.environments:
        runs_in = ", ".join(code(e) for e in entry.environments)
        raise UsageError(
            f"`{escape(service)}` does not run in `{escape(env)}`; it runs in {runs_in}."
        )
    return Target(
        service=service,
        env=env,
        environment=environment,
        namespace=ctx.catalog.namespace(service, env),
        selector=f"app.kubernetes.io/name={service}",
        application=ctx.catalog.argocd_application(service, env),
    )


async def resolve_target(ctx: Context, service: str, env: str, *, verb: str) -> Target:
    """The target, if `ctx.user` may change it: the owning team or a platform admin."""
    target = lookup_target(ctx, service, env)
    owner = ctx.catalog.service(service).owner
    email = await ctx.directory.email_of(ctx.user)
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    if owner not in me.teams and not me.platform_admin:
        raise UsageError(
            f"Only the *{escape(owner)}* team, which owns `{escape(service)}`, or a "
            f"platform admin may {_on_it(verb)}. Ask in "
            f"{escape(ctx.catalog.team(owner).slack_channel)}."
        )
    return target


def _on_it(verb: str) -> str:
    """`deploy it`, `roll it back`: the object goes before a verb's particle."""
    verb, _, particle = verb.partition(" ")
    return f"{verb} it {particle}" if particle else f"{verb} it"


def check_version(version: str) -> str:
    """The version as typed, if it is a tag or a digest; UsageError otherwise."""
    if not VERSION_PATTERN.fullmatch(version):
        shown = code(version[:60] + ("…" if len(version) > 60 else ""))
        raise UsageError(
            f"{shown} is not a version. Type an image tag such as `1.4.2` (letters, digits, "
            "`_`, `.` and `-`, at most 128, not starting with `.` or `-`) or a digest "
            "`sha256:` followed by 64 hex digits."
        )
    return version


def parse_revision(text: str, *, usage: str) -> int:
    """A revision (Kubernetes) or history id (Argo CD, from 0) as typed: a whole number."""
    if not text.isdigit() or len(text) > 9:
        raise UsageError(
            f"{code(text[:40])} is not a revision; type its number, as "
            "`/platform history` shows it.",
            usage=usage,
        )
    return int(text)
