"""The Actions of releases: Deploy, Rollback and SetAutoSync, and what they show people.

Each holds exactly what will change (image and revision, before and after), so its
fingerprint binds an approval to that change and nothing else.
"""

from __future__ import annotations

import json
import re
from typing import ClassVar, Literal

from features.releases.revisions import short_sha
from kernel.actions import Action, StepContext
from kernel.mrkdwn import code, escape
from kernel.ports.systems import RolloutStatus

Backend = Literal["kubernetes", "argocd"]

AUTO_SYNC_OFF_AND_ROLL_BACK = "release.rollback_without_auto_sync"
"""Button action id: turn Argo CD's automated sync off, then roll back."""
AUTO_SYNC_BACK_ON = "release.auto_sync_on"
"""Button action id: turn Argo CD's automated sync back on after such a rollback."""


class Deploy(Action):
    """Put one version of a service into one environment."""

    kind: ClassVar[str] = "deploy"

    service: str
    env: str
    backend: Backend = "kubernetes"
    version: str
    """What was typed: an image tag, a digest, or (Argo CD) a git revision."""
    image: str | None = None
    """Kubernetes: the full image reference every Deployment gets."""
    git_revision: str | None = None
    """Argo CD: the git revision the Application is synced to, as typed (a SHA, full or
    abbreviated, or a tag); Argo CD resolves it to a full SHA when the sync starts."""
    from_image: str
    """What runs now (Argo CD: the Application's images, comma-separated)."""
    from_revision: int
    """Kubernetes: the first Deployment's revision now; Argo CD: the newest history id."""
    from_git_revision: str | None = None
    """Argo CD: the full SHA running when it was planned (the newest history entry)."""
    deployments: tuple[str, ...] = ()
    """Kubernetes: the Deployments that get the image, by name."""

    def summary(self) -> str:
        return f"deploy {self.service} {self.version} to {self.env}"

    def lock_key(self) -> str:
        return f"{self.service}/{self.env}"

    def change_lines(self) -> list[str]:
        where = f"`{escape(self.service)}` in `{escape(self.env)}`"
        if self.backend == "argocd":
            return [
                f"{where}: git revision {code(short_sha(self.from_git_revision))} -> "
                f"{code(self.git_revision or '?')} (Argo CD)"
            ]
        lines = [
            f"{where}: {image_change(self.from_image, self.image or '')} "
            f"(revision {self.from_revision} -> {self.from_revision + 1})"
        ]
        if len(self.deployments) > 1:
            lines.append("Deployments: " + ", ".join(code(d) for d in self.deployments))
        return lines


class Rollback(Action):
    """Put an earlier revision of a service back in one environment."""

    kind: ClassVar[str] = "rollback"

    service: str
    env: str
    backend: Backend = "kubernetes"
    to_revision: int
    """Kubernetes: the Deployment revision to go back to; Argo CD: the history id."""
    from_revision: int
    """Kubernetes: the revision running now; Argo CD: the current history id."""
    from_image: str
    to_image: str
    deployment: str | None = None
    """Kubernetes: the Deployment rolled back."""
    from_git_revision: str | None = None
    """Argo CD: the full SHA running when it was planned (the newest history entry)."""
    to_git_revision: str | None = None
    """Argo CD: the full SHA of the history entry rolled back to."""
    disable_auto_sync: bool = False
    """Argo CD: turn automated sync off first (it would undo the rollback)."""
    auto_sync_policy: dict[str, bool] | None = None
    """Argo CD, with `disable_auto_sync`: `spec.syncPolicy.automated` exactly as it was
    when planned, which turning auto-sync back on restores."""

    def summary(self) -> str:
        if self.backend == "argocd":
            return (
                f"roll back {self.service} in {self.env} to history id {self.to_revision} "
                f"(git {short_sha(self.to_git_revision)})"
            )
        return f"roll back {self.service} in {self.env} to revision {self.to_revision}"

    def lock_key(self) -> str:
        return f"{self.service}/{self.env}"

    def destination(self) -> str:
        """What it rolls back to, for people (mrkdwn)."""
        if self.backend == "argocd":
            return (
                f"Argo CD history id {self.to_revision} "
                f"(git {code(short_sha(self.to_git_revision))})"
            )
        return f"revision {self.to_revision} (`{escape(self.to_image)}`)"

    def change_lines(self) -> list[str]:
        where = f"`{escape(self.service)}` in `{escape(self.env)}`"
        if self.backend == "argocd":
            lines = [
                f"{where}: git {code(short_sha(self.from_git_revision))} -> "
                f"{code(short_sha(self.to_git_revision))} (Argo CD history {self.from_revision} "
                f"-> {self.to_revision}); running now: {escape(self.from_image or 'unknown')}"
            ]
            if self.disable_auto_sync:
                lines.append(
                    f"Automated sync ({automated_text(self.auto_sync_policy)}) is turned *off* "
                    "first; a button turns it back on exactly as it was."
                )
            return lines
        return [
            f"{where}: {image_change(self.from_image, self.to_image)} "
            f"(revision {self.from_revision} -> {self.to_revision}, which becomes revision "
            f"{self.from_revision + 1})"
        ]


class SetAutoSync(Action):
    """Turn Argo CD's automated sync on or off for a service's Application.

    Turning it back on after a rollback restores `policy`, the exact `automated` block the
    rollback turned off; Argo CD then syncs to what git's target revision resolves to
    (`git_revision`), which the approval card says when it is not what runs.
    """

    kind: ClassVar[str] = "auto-sync"

    service: str
    env: str
    enabled: bool
    policy: dict[str, bool] | None = None
    """On: `spec.syncPolicy.automated` exactly as it becomes."""
    offer_run: str | None = None
    """The rollback Run whose "Turn auto-sync back on" message this answers."""
    target_revision: str | None = None
    """`spec.source.targetRevision` when planned (e.g. `HEAD`)."""
    git_revision: str | None = None
    """What it resolved to when planned (full SHA): what automated sync would deploy."""
    running_git_revision: str | None = None
    """What ran when planned (full SHA)."""

    def summary(self) -> str:
        state = "on" if self.enabled else "off"
        return f"turn auto-sync {state} for {self.service} in {self.env}"

    def lock_key(self) -> str:
        return f"{self.service}/{self.env}"

    def change_lines(self) -> list[str]:
        where = f"`{escape(self.service)}` in `{escape(self.env)}`"
        if not self.enabled:
            return [f"{where}: Argo CD auto-sync off"]
        lines = [f"{where}: Argo CD auto-sync on, as {automated_text(self.policy)}"]
        if self.git_revision and self.git_revision != self.running_git_revision:
            lines.append(
                f":warning: Argo CD then deploys git {code(short_sha(self.git_revision))} "
                f"(what {code(self.target_revision or 'HEAD')} is now) in place of "
                f"{code(short_sha(self.running_git_revision))}, which runs now."
            )
        return lines


def automated_text(policy: dict[str, bool] | None) -> str:
    """`automated: {"prune": true, "selfHeal": false}` as inline code, exactly."""
    if policy is None:
        return "`automated` unknown"
    return code("automated: " + json.dumps(policy, separators=(", ", ": ")))


def image_change(before: str, after: str) -> str:
    """`repo:1.4.2 -> :1.4.1` when only the tag changes, else both images whole."""
    repository, _ = split_image(before)
    if after.startswith(repository) and repository:
        return f"{escape(before)} -> {escape(after[len(repository) :])}"
    return f"{escape(before)} -> {escape(after)}"


def split_image(image: str) -> tuple[str, str]:
    """(`registry:5000/team/app`, `:1.4.2` or `@sha256:…`): a port is not a tag."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def with_version(image: str, version: str) -> str:
    """The same repository at another tag or digest."""
    repository, _ = split_image(image)
    separator = "@" if version.startswith("sha256:") else ":"
    return f"{repository}{separator}{version}"


def change_cause(verb: str, what: str, context: StepContext) -> str:
    """`deploy 1.4.2 by U01ALICE (run 0f3a…)`: what `/platform history` reads back."""
    return f"{verb} {what} by {context.requested_by} (run {context.run_id})"


CHANGE_CAUSE_PATTERN = re.compile(
    r"^(?P<verb>deploy|rollback) (?P<what>.+) by (?P<user>[UW][A-Z0-9]+) \(run (?P<run>[\w-]+)\)$"
)


def rollout_line(status: RolloutStatus) -> str:
    if not status.observed:
        return "waiting for the spec update to be observed"
    return (
        f"{status.updated}/{status.desired} updated, {status.ready} ready, "
        f"{status.available} available"
    )
