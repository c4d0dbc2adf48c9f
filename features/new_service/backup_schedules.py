"""The daily Velero Schedule of a new service's namespaces (platform.yml `backups`):
made with the namespaces, removed by Clean up. The backups it made are not deleted:
Velero keeps each until its TTL runs out (gc_controller), and Clean up says until when.
"""

from __future__ import annotations

from datetime import datetime

from features.kit.context import Ports
from kernel.actions import StepContext
from kernel.errors import AdapterError, StepFailed
from kernel.ports.backups import backup_labels, backup_selector, schedule_name


async def ensure_schedules(
    ports: Ports, context: StepContext, *, service: str, environments: tuple[str, ...]
) -> list[str]:
    """A Schedule for each environment in `backups.scheduled_environments`; their names."""
    settings = ports.catalog.model.backups
    wanted = [env for env in environments if env in settings.scheduled_environments]
    if not wanted:
        return []
    velero = ports.adapters.velero
    if velero is None:  # a bot without clusters: nothing to schedule in
        return []
    made = []
    for env in wanted:
        name = schedule_name(service, env)
        await context.report(f"daily backup schedule {name}")
        try:
            await velero.backups(ports.catalog.environment(env).cluster).ensure_schedule(
                name=name,
                namespace=ports.catalog.namespace(service, env),
                cron=settings.schedule,
                ttl=f"{settings.retention_hours}h0m0s",
                labels=backup_labels(service, env),
            )
        except AdapterError as exc:
            raise StepFailed(f"{env}: backup schedule: {exc.message}") from None
        made.append(name)
    return made


async def remove_schedules(
    ports: Ports, context: StepContext, *, service: str, environments: tuple[str, ...]
) -> str:
    """Delete the Schedules; what to say about them and the backups that stay."""
    velero = ports.adapters.velero
    if velero is None:
        return ""
    removed, last = [], None
    for env in environments:
        backups = velero.backups(ports.catalog.environment(env).cluster)
        name = schedule_name(service, env)
        await context.report(f"deleting backup schedule {name}")
        try:
            if await backups.delete_schedule(name):
                removed.append(name)
            kept = await backups.backups(selector=backup_selector(service, env))
        except AdapterError as exc:
            raise StepFailed(f"{env}: backup schedule: {exc.message}") from None
        ends = [b.expires_at for b in kept if b.expires_at is not None]
        if ends:
            last = max([*ends, last] if last else ends)
        elif kept and last is None:
            last = datetime.max
    said = f"backup schedule {', '.join(removed)} deleted" if removed else ""
    if last is not None:
        when = "" if last == datetime.max else f" (the last on {last:%Y-%m-%d} UTC)"
        said += f"{'; ' if said else ''}its backups stay until they expire{when}"
    return said
