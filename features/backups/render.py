"""What people read about backups and restores: outcomes, list lines, Velero's words.

Velero keeps the per-item warnings and errors of a backup or restore in its logs in
object storage, not in the API; the counts are in `status`, and each message says how to
read the details (`velero backup logs`, `velero restore describe --details`).
"""

from __future__ import annotations

from datetime import datetime

from kernel.mrkdwn import code, escape
from kernel.ports.backups import BackupInfo, RestoreInfo, ScheduleInfo, StorageLocation

ICONS = {
    "Completed": ":white_check_mark:",
    "PartiallyFailed": ":warning:",
    "Failed": ":x:",
    "FailedValidation": ":x:",
    "InProgress": ":hourglass_flowing_sand:",
    "": ":new:",
    "New": ":new:",
}


def ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "?"
    seconds = int((now - when).total_seconds())
    return f"{span(abs(seconds))} ago" if seconds >= 0 else f"in {span(-seconds)}"


def until(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "no expiry yet"
    seconds = int((when - now).total_seconds())
    return f"expires in {span(seconds)}" if seconds > 0 else "expired"


def span(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def where_is_storage(name: str, location: StorageLocation | None) -> str:
    """Why nothing can be written to or read from Velero's storage, in Velero's words."""
    if location is None:
        return (
            f"Velero has no backup storage location {code(name)} in this cluster; ask the "
            "platform team to configure one (`velero backup-location get`)"
        )
    said = f": {escape(location.message)}" if location.message else ""
    return (
        f"Velero's backup storage location {code(name)} is {location.phase}{said}. "
        "Nothing can be backed up or restored until it is Available again; tell the "
        "platform team"
    )


def backup_outcome(backup: BackupInfo) -> str:
    icon = ICONS.get(backup.phase, "")
    counts = f"{backup.items_done}/{backup.items_total} items"
    if backup.phase == "Completed":
        text = f"{icon} Backup {code(backup.name)} *Completed*: {counts}"
    elif backup.phase == "PartiallyFailed":
        text = (
            f"{icon} Backup {code(backup.name)} *PartiallyFailed*: {counts} backed up, "
            f"{backup.errors} item error(s); it can be restored without them. Which ones: "
            f"`velero backup logs {escape(backup.name)}`"
        )
    elif backup.phase == "FailedValidation":
        why = "; ".join(escape(e) for e in backup.validation_errors) or "no reason given"
        return f"{icon} Velero refused Backup {code(backup.name)} (FailedValidation): {why}"
    else:
        why = escape(backup.failure_reason) or "no reason given"
        return f"{icon} Backup {code(backup.name)} *Failed*: {why}"
    if backup.warnings:
        text += f", {backup.warnings} warning(s)"
    if backup.expires_at is not None:
        text += f"; kept until {backup.expires_at:%Y-%m-%d %H:%M} UTC"
    return text


def restore_outcome(restore: RestoreInfo, *, target: str) -> str:
    icon = ICONS.get(restore.phase, "")
    counts = f"{restore.items_done}/{restore.items_total} items"
    into = f"into {code(target)}"
    if restore.phase == "FailedValidation":
        why = "; ".join(escape(e) for e in restore.validation_errors) or "no reason given"
        return f"{icon} Velero refused Restore {code(restore.name)} (FailedValidation): {why}"
    if restore.phase == "Failed":
        why = escape(restore.failure_reason) or "no reason given"
        return f"{icon} Restore {code(restore.name)} {into} *Failed*: {why}"
    text = f"{icon} Restore {code(restore.name)} {into} *{restore.phase}*: {counts} restored"
    if restore.errors:
        text += f", {restore.errors} error(s)"
    if restore.warnings:
        text += (
            f", {restore.warnings} warning(s) (e.g. objects that already existed and were "
            "left as they are)"
        )
    if restore.errors or restore.warnings:
        text += f". Details: `velero restore describe {escape(restore.name)} --details`"
    return text


def backup_line(backup: BackupInfo, now: datetime) -> str:
    icon = ICONS.get(backup.phase, "")
    phase = backup.phase or "New"
    parts = [f"{icon} {code(backup.name)} *{phase}*"]
    if backup.phase == "InProgress" or backup.items_total:
        parts.append(f"{backup.items_done}/{backup.items_total} items")
    if backup.errors:
        parts.append(f"{backup.errors} error(s)")
    if backup.warnings:
        parts.append(f"{backup.warnings} warning(s)")
    parts.append(f"taken {ago(backup.started_at or backup.created_at, now)}")
    parts.append(until(backup.expires_at, now))
    if backup.schedule:
        parts.append(f"by schedule {code(backup.schedule)}")
    return " · ".join(parts)


def schedule_line(schedule: ScheduleInfo | None, now: datetime) -> str:
    if schedule is None:
        return "No Velero Schedule backs this namespace up."
    state = "paused" if schedule.paused else schedule.phase or "New"
    last = f", last {ago(schedule.last_backup, now)}" if schedule.last_backup else ""
    return (
        f"Schedule {code(schedule.name)}: `{escape(schedule.cron)}` (UTC), kept "
        f"{escape(schedule.ttl)}, {state}{last}"
    )
