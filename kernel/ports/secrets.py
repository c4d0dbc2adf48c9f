"""Vault / OpenBao: a service's KV path, policy and Kubernetes role; secret values,
versions and transit (the `SecretStore` port).

See kernel.ports.systems for what every port promises (async, idempotent, errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class ServiceSecrets:
    """What exists in Vault for one service in one environment."""

    path: str
    kv_exists: bool
    policy_exists: bool
    role_exists: bool


@dataclass(frozen=True)
class SecretKey:
    """One key under a service's KV path, as `secret list` shows it: never its value."""

    key: str
    version: int
    """The current version (KV v2 counts from 1)."""
    updated_at: datetime | None
    set_by: str | None
    """Who wrote the current version through the bot (custom_metadata), if it says."""
    deleted: bool
    """The current version is deleted (soft: older versions may still be rolled back to)."""
    versions: tuple[int, ...] = ()
    """Versions that still hold data (neither deleted nor destroyed), oldest first."""


class SecretStore(Protocol):
    """The Vault operations the golden path and the secrets feature need; all idempotent.

    A service's secrets live one key per KV v2 secret, at `<team>/<service>/<env>/<KEY>`
    holding `{KEY: value}`, so each key has its own versions. Keys match
    `^[A-Z_][A-Z0-9_]*$`; anything else is refused before Vault is asked. Values are
    never logged and never appear in an error.
    """

    async def write_value(
        self,
        team: str,
        service: str,
        env: str,
        key: str,
        value: str,
        *,
        cas: int,
        metadata: dict[str, str],
    ) -> int:
        """Write a new version if the current one is `cas` (0: the key must not exist);
        `metadata` becomes the key's custom_metadata (who, which Run). If the current
        version is `cas + 1` and already holds `value` (a re-run after a crash), nothing
        is written. Returns the version now current; AdapterError if the key moved."""
        ...

    async def read_key(self, team: str, service: str, env: str, key: str) -> SecretKey | None:
        """The key's versions and who set it; None if it does not exist."""
        ...

    async def list_keys(self, team: str, service: str, env: str) -> list[SecretKey]:
        """Every key under the service's path, by name."""
        ...

    async def delete_key(self, team: str, service: str, env: str, key: str, *, purge: bool) -> bool:
        """Delete the current version (soft, as `vault kv delete`), or with `purge` the key
        and every version for good (`vault kv metadata delete`). False if nothing was there."""
        ...

    async def rollback_key(
        self,
        team: str,
        service: str,
        env: str,
        key: str,
        *,
        to_version: int,
        cas: int,
        metadata: dict[str, str],
    ) -> int:
        """Write version `to_version`'s data as a new version (as `vault kv rollback`),
        if the current one is `cas`; idempotent like `write_value`. The new version."""
        ...

    async def encrypt(self, plaintext: str) -> str:
        """Encrypt with the bot's transit key (created if missing); Vault's ciphertext."""
        ...

    async def decrypt(self, ciphertext: str) -> str: ...

    async def fingerprint(self, plaintext: str) -> str:
        """A short keyed hash (transit HMAC) to tell two values apart on an approval card,
        which nobody without the bot's transit key can test guesses against."""
        ...

    async def ensure_kv_path(self, team: str, service: str, env: str) -> str:
        """Create `<team>/<service>/<env>` with a placeholder if missing; return the path."""
        ...

    async def ensure_policy(
        self, name: str, paths: list[str], *, read_paths: list[str] | None = None
    ) -> bool:
        """Make the ACL policy grant exactly `paths` (KV, read-write) and `read_paths`
        (read only, e.g. `database/creds/<service>-<env>`); True if created or changed."""
        ...

    async def ensure_kubernetes_auth(
        self, host: str, *, ca_cert: str | None = None, disable_local_ca_jwt: bool = False
    ) -> bool:
        """Enable and configure Kubernetes auth; True if anything changed."""
        ...

    async def ensure_kubernetes_role(
        self,
        name: str,
        *,
        service_account: str,
        namespace: str,
        policies: list[str],
        ttl: str = "1h",
    ) -> bool:
        """Bind a role to a service account and namespace; True if created or changed."""
        ...

    async def describe(
        self, team: str, service: str, env: str, *, policy: str, role: str
    ) -> ServiceSecrets:
        """What exists for this service and environment."""
        ...

    async def delete_service(
        self, team: str, service: str, env: str, *, policy: str, role: str
    ) -> None:
        """Remove the KV path (all versions), the policy and the role; missing is fine."""
        ...
