"""From what was asked (a command, a merge request label) to a proposed CreateEnvironment:
names checked, the version's image found, the team's limits and budget applied.

One way for every caller, so a preview environment obeys the same quotas as one typed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from catalog import UnknownName
from features.environments.actions import (
    CreateEnvironment,
    CreateLargeEnvironment,
    PreviewOf,
    dns_label,
)
from features.environments.desk import Environment, EnvironmentDesk
from kernel.errors import AdapterError, UsageError
from kernel.mrkdwn import code, escape

NAME_MAX = 40
FALLBACK_REGISTRY = "registry.example.com"
"""Where images are when the template environment runs none of the service to copy from."""


@dataclass(frozen=True)
class Ask:
    """What someone asked for."""

    service: str
    creator: str
    name: str | None = None
    version: str | None = None
    hours: int | None = None
    size: str | None = None
    preview: PreviewOf | None = None


def default_name(service: str, seed: str) -> str:
    return f"{service[:30]}-{hashlib.sha256(seed.encode()).hexdigest()[:6]}"


def namespace_of(name: str) -> str:
    """`env-<name>`: never the namespace of a configured environment (`<service>-<env>`)."""
    return f"env-{name}"


async def plan_create(desk: EnvironmentDesk, ask: Ask, *, seed: str) -> CreateEnvironment:
    """The Action for `ask`; UsageError saying what to change."""
    catalog = desk.catalog
    settings = desk.settings
    try:
        service = catalog.service(ask.service)
        template = catalog.environment(settings.template)
    except UnknownName as exc:
        raise UsageError(escape(str(exc))) from None
    name = dns_label(
        ask.name or default_name(ask.service, seed), what="environment name", max_length=NAME_MAX
    )
    if name in catalog.model.environments:
        raise UsageError(
            f"{code(name)} is a configured environment; an environment on demand can't "
            "shadow it. Pick another `--name`."
        )
    if await desk.named(name) is not None:
        raise UsageError(
            f"An environment called {code(name)} exists already; pick another `--name` "
            f"(`/platform env list` shows them)."
        )
    size = ask.size or settings.default_size
    if size not in settings.sizes:
        sizes = ", ".join(code(s) for s in settings.sizes)
        raise UsageError(f"{code(size[:20])} is not a size; sizes: {sizes}.")
    quota = dict(settings.sizes[size])
    cpu = cpu_of(quota.get("requests.cpu", "0"))
    limits = desk.limits(service.owner)
    hours = ask.hours or limits.default_ttl_hours
    await check_budget(desk, team=service.owner, cpu=cpu)
    image, version = await image_for(desk, ask.service, template.cluster, ask.version)
    host = f"{name}.{settings.ingress_domain}" if settings.ingress_domain else None
    large = settings.approval_above_cpu is not None and cpu > settings.approval_above_cpu
    kind = CreateLargeEnvironment if large else CreateEnvironment
    return kind(
        name=name,
        service=ask.service,
        team=service.owner,
        env=settings.template,
        cluster=template.cluster,
        namespace=namespace_of(name),
        version=version,
        image=image,
        size=size,
        quota=quota,
        cpu=cpu,
        hours=hours,
        host=host,
        preview=ask.preview,
    )


async def check_budget(desk: EnvironmentDesk, *, team: str, cpu: float) -> None:
    """UsageError naming what to delete when the team is at its limit."""
    limits = desk.limits(team)
    live = await desk.live(team=team)
    used = sum(e.cpu for e in live)
    problem = None
    if len(live) >= limits.max_environments:
        problem = (
            f"Team *{escape(team)}* has {len(live)} environments, its maximum "
            f"({limits.max_environments})."
        )
    elif used + cpu > limits.cpu_budget:
        problem = (
            f"Team *{escape(team)}*'s environments ask {used:g} CPU of its {limits.cpu_budget:g} "
            f"CPU budget; this one would need {cpu:g} more."
        )
    if problem is None:
        return
    raise UsageError(f"{problem} Delete one first:\n" + "\n".join(_deletable(live)))


def _deletable(live: list[Environment]) -> list[str]:
    return [
        f"• {code(e.name)} ({e.cpu:g} CPU, <@{e.creator}>): `/platform env delete {e.name}`"
        for e in sorted(live, key=lambda e: e.created_at)[:10]
    ]


def cpu_of(quantity: str) -> float:
    """A Kubernetes CPU quantity (`2`, `500m`) in cores."""
    text = str(quantity).strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return 0.0


async def image_for(
    desk: EnvironmentDesk, service: str, cluster: str, version: str | None
) -> tuple[str, str]:
    """(image, version): the repository the template environment runs, at `version` (its
    own tag when none is asked)."""
    catalog = desk.catalog
    running: str | None = None
    clusters = desk.ports.adapters.require("kubernetes")
    try:
        statuses = await clusters.cluster(cluster).deployments(
            catalog.namespace(service, desk.settings.template),
            selector=f"app.kubernetes.io/name={service}",
        )
    except AdapterError:
        statuses = []
    for status in statuses:
        if status.images:
            running = status.images[0]
            break
    if running is None:
        repository = f"{FALLBACK_REGISTRY}/{catalog.service(service).owner}/{service}"
    else:
        repository = running.split("@", 1)[0]
        last = repository.rsplit("/", 1)[-1]
        if ":" in last:
            repository = repository[: repository.rfind(":")]
    if version is None:
        if running is None or running.split("/")[-1].count(":") == 0:
            raise UsageError(
                f"`{escape(service)}` does not run in `{escape(desk.settings.template)}` to "
                "copy a version from; say which: `--version 1.4.2` or `--branch my-branch`."
            )
        version = running.rsplit(":", 1)[-1] if "@" not in running else running.split("@")[1]
    separator = "@" if version.startswith("sha256:") else ":"
    return f"{repository}{separator}{version}", version
