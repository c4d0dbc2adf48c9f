"""The Actions of environments on demand: a namespace of its own, an environment (a
namespace with the service deployed in it, for a while), its extension and its deletion.

Each fingerprint holds exactly what will change (the quota, the image, the hours), so an
approval covers that and nothing bigger or longer.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from kernel.actions import Action
from kernel.errors import UsageError
from kernel.mrkdwn import code, escape

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
"""RFC 1123 label as Kubernetes names namespaces (starting with a letter, as ours do)."""
TTL = re.compile(r"^(?:(\d{1,3})d)?(?:(\d{1,4})h)?$")


def dns_label(text: str, *, what: str, max_length: int) -> str:
    """`text` if it is a DNS label of at most `max_length`; UsageError saying why not."""
    if len(text) > max_length or not DNS_LABEL.fullmatch(text):
        raise UsageError(
            f"{code(text[:70])} is not a valid {what}: use lowercase letters, digits and "
            f"'-', start with a letter, end with a letter or digit, at most {max_length} "
            "characters."
        )
    return text


def parse_ttl(text: str, *, max_hours: int) -> int:
    """`3d`, `12h`, `1d12h` -> hours; UsageError outside 1 hour .. max_hours."""
    match = TTL.fullmatch(text.strip().lower())
    if not text or match is None or not any(match.groups()):
        raise UsageError(f"{code(text[:20])} is not a time to live; write e.g. `3d` or `12h`.")
    days, hours = (int(g) if g else 0 for g in match.groups())
    total = days * 24 + hours
    if total < 1:
        raise UsageError("An environment lives at least 1 hour.")
    if total > max_hours:
        raise UsageError(
            f"{code(text)} is longer than your team's maximum ({hours_text(max_hours)}); "
            "ask for less (you can extend it later)."
        )
    return total


def hours_text(hours: float) -> str:
    whole = int(hours)
    days, rest = divmod(whole, 24)
    if days and rest:
        return f"{days}d{rest}h"
    return f"{days}d" if days else f"{rest}h"


def branch_slug(branch: str) -> str:
    """The image tag CI builds for a branch: GitLab's `CI_COMMIT_REF_SLUG` (lowercased,
    everything but a-z and 0-9 replaced by '-', at most 63, no '-' at either end; see
    docs.gitlab.com ci/variables/predefined_variables.md)."""
    slug = re.sub(r"[^a-z0-9]", "-", branch.lower())[:63].strip("-")
    if not slug:
        raise UsageError(f"{code(branch[:40])} is not a branch name.")
    return slug


class CreateNamespace(Action):
    """A namespace of one team's own, with the defaults every service namespace gets."""

    kind: ClassVar[str] = "namespace.create"

    team: str
    name: str
    """The namespace, `<team>-<what was asked>`."""
    env: str
    """The configured environment whose cluster it goes to."""
    cluster: str
    rbac_group: str
    quota: dict[str, str]

    def summary(self) -> str:
        return f"create namespace {self.name} for {self.team} in {self.cluster}"

    def lock_key(self) -> str:
        return f"namespace:{self.cluster}/{self.name}"

    def change_lines(self) -> list[str]:
        quota = ", ".join(f"{k}={v}" for k, v in sorted(self.quota.items()))
        return [
            f"namespace {code(self.name)} in cluster {code(self.cluster)} for team "
            f"*{escape(self.team)}* (group {code(self.rbac_group)} may edit)",
            f"quota {escape(quota)}; default limits; default-deny network policy",
        ]


class PreviewOf(BaseModel):
    """The merge request a preview environment belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project_id: int
    project_path: str
    iid: int
    url: str = ""


class CreateEnvironment(Action):
    """An environment of one service: its own namespace, the service at a version."""

    kind: ClassVar[str] = "env.create"

    name: str
    service: str
    team: str
    env: str
    """The configured environment it derives from (cluster, backend)."""
    cluster: str
    namespace: str
    version: str
    image: str
    size: str
    quota: dict[str, str]
    cpu: float
    hours: int
    host: str | None = None
    preview: PreviewOf | None = None

    def summary(self) -> str:
        return (
            f"create environment {self.name}: {self.service} {self.version} "
            f"({self.size}, {hours_text(self.hours)})"
        )

    def lock_key(self) -> str:
        return f"env:{self.name}"

    def change_lines(self) -> list[str]:
        lines = [
            f"namespace {code(self.namespace)} in cluster {code(self.cluster)} "
            f"(from `{escape(self.env)}`), size *{escape(self.size)}* ({self.cpu:g} CPU)",
            f"`{escape(self.service)}` at {code(self.image)}",
            f"lives {hours_text(self.hours)}, then it is deleted by itself",
        ]
        if self.host:
            lines.append(f"URL https://{escape(self.host)}")
        return lines


class CreateLargeEnvironment(CreateEnvironment):
    """An environment asking more CPU than `on_demand.approval_above_cpu`: its own kind,
    so an approval policy can match it."""

    kind: ClassVar[str] = "env.create-large"


class EnvironmentChange(Action):
    """What changes to a live environment name: which one, of which service and team."""

    env_id: str
    name: str
    service: str
    team: str
    env: str

    @property
    def where(self) -> str:
        return f"environment {code(self.name)} (`{escape(self.service)}`)"


class ExtendEnvironment(EnvironmentChange):
    """Push an environment's end out, within the team's maximum."""

    kind: ClassVar[str] = "env.extend"

    from_generation: int
    hours: int

    def summary(self) -> str:
        return f"extend environment {self.name} by {hours_text(self.hours)}"

    def lock_key(self) -> str:
        return f"env:{self.name}"


class ExtendEnvironmentBeyondMax(ExtendEnvironment):
    """An extension past the team's maximum lifetime: needs approval where policy says."""

    kind: ClassVar[str] = "env.extend-beyond-max"


class DeleteEnvironment(EnvironmentChange):
    """Tear an environment down: its namespace and all inside. Never waits for approval."""

    kind: ClassVar[str] = "env.delete"

    why: Literal["expired", "deleted", "merged", "closed", "unlabelled"]
    by: str
    attempt: int = 0

    def summary(self) -> str:
        return f"delete environment {self.name} ({self.why})"
