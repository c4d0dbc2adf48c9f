"""A service's PostgreSQL database on the golden path (the `ServiceDatabases` port).

Per service and environment: a database and a NOLOGIN owner role on the environment's
PostgreSQL server, and a Vault/OpenBao database secrets engine role
(`database/roles/<service>-<env>`) whose short-lived logins act as that owner in that
database only. The server's admin connection is Vault's (`database/config/<server>`);
the bot borrows a five-minute admin login from Vault for the DDL and revokes it.

See kernel.ports.systems for what every port promises (async, idempotent, errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MAX_IDENTIFIER = 63
"""PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1)."""


@dataclass(frozen=True)
class ServiceDatabase:
    """Where one service's database in one environment lives, and its names."""

    server: str
    """The catalog's name of the server, also its Vault connection `database/config/<server>`."""
    host: str
    port: int
    sslmode: str
    database: str
    """The database's name, e.g. `orders_api_dev` (prefix + service + env, `-` as `_`)."""
    owner: str
    """The NOLOGIN role that owns the database and everything in it."""
    vault_role: str
    """`<service>-<env>`: `database/creds/<vault_role>` issues logins."""
    readonly_role: str = ""
    """The Vault role issuing read-only logins (`<service>-<env>-readonly`)."""

    @property
    def creds_path(self) -> str:
        """What the service's Vault policy may read, and the Vault Agent injects."""
        return f"database/creds/{self.vault_role}"

    def url(self, username: str, password: str) -> str:
        """A libpq URL for these credentials (what the skeleton's DATABASE_URL holds)."""
        from urllib.parse import quote

        return (
            f"postgresql://{quote(username, safe='')}:{quote(password, safe='')}"
            f"@{self.host}:{self.port}/{self.database}?sslmode={self.sslmode}"
        )


@dataclass(frozen=True)
class DatabaseLogin:
    """A short-lived login from Vault's database engine. Never logged, never in Slack."""

    username: str
    password: str
    lease_id: str
    ttl_seconds: int


@dataclass(frozen=True)
class DatabaseState:
    """What exists for one service database."""

    database_exists: bool
    owner_exists: bool
    vault_role_exists: bool


class ServiceDatabases(Protocol):
    """The database engine and the PostgreSQL servers; every call idempotent."""

    async def ensure_database(self, db: ServiceDatabase, *, ttl: str = "1h") -> list[str]:
        """Create what is missing: the owner role, the database (CONNECT for its owner
        only, not PUBLIC), the Vault role. Returns what was created (empty: all there).
        AdapterError if the server's Vault connection is not configured."""
        ...

    async def describe(self, db: ServiceDatabase) -> DatabaseState: ...

    async def drop_database(self, db: ServiceDatabase) -> list[str]:
        """Delete the Vault roles, drop the database (ending its sessions) and the owner
        role; what is already gone is fine. Returns what was removed."""
        ...

    async def revoke_logins(self, db: ServiceDatabase) -> None:
        """Rotate: revoke every login issued for the service (read-only ones too); each
        is dropped on the server, and Vault Agents fetch new ones."""
        ...

    async def issue_login(self, db: ServiceDatabase, *, readonly: bool = False) -> DatabaseLogin:
        """A login from `database/creds/<vault_role>` (or its read-only role)."""
        ...
