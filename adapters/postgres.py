"""Service databases on the golden path: Vault's database secrets engine + PostgreSQL.

The admin connection to each PostgreSQL server is Vault's (`database/config/<server>`,
the postgresql-database-plugin, configured once by the platform team with a role that
has CREATEDB and CREATEROLE; `configure_server` below is that one-time step, used by the
sandbox and the tests). The bot never holds that password. For the DDL that Vault's
engine cannot run (CREATE DATABASE must run outside a transaction; Vault runs creation
statements inside one), the bot asks Vault for a five-minute admin login from its own
role `database/roles/platform-bot-<server>`, does the work over psycopg, and revokes the
lease at once.

Per service and environment it makes:

- a NOLOGIN owner role and the database it owns; CONNECT is revoked from PUBLIC, so
  another service's logins cannot even connect;
- a NOLOGIN read-only role (CONNECT, USAGE and SELECT, also on tables created later);
- `database/roles/<service>-<env>`: logins that are members of the owner and `SET role`
  to it in that database (so the tables they create belong to the owner and survive the
  login's expiry), and `<service>-<env>-readonly` for read-only logins.

Upstream: creation statements and `{{name}}`/`{{password}}`/`{{expiration}}` follow
OpenBao's website/content/docs/secrets/databases/postgresql.mdx and the plugin's
plugins/database/postgresql/postgresql.go (statements run in one transaction).
PostgreSQL 15 semantics for CREATEROLE (it may grant any non-superuser role).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import psycopg
from psycopg import sql

from adapters.vault import ttl_seconds
from adapters.vault_values import VaultError
from kernel.errors import AdapterError
from kernel.ports.databases import (
    DatabaseLogin,
    DatabaseState,
    ServiceDatabase,
    ServiceDatabases,
)

__all__ = ["DatabaseError", "ServiceDatabases", "VaultPostgres", "admin_role"]

log = logging.getLogger(__name__)

T = TypeVar("T")

ADMIN_TTL = 300
"""Seconds the bot's own admin login lives (it is revoked as soon as the DDL is done)."""


class DatabaseError(AdapterError):
    """PostgreSQL refused or failed; the message names what, never a password."""

    def __init__(self, message: str) -> None:
        super().__init__("PostgreSQL", message)


def admin_role(server: str) -> str:
    """The bot's own Vault role on a server: five-minute logins with CREATEDB/CREATEROLE."""
    return f"platform-bot-{server}"


def _admin_statements() -> list[str]:
    return [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        "VALID UNTIL '{{expiration}}' CREATEDB CREATEROLE;",
        # DROP DATABASE ... WITH (FORCE) ends the sessions of the service's logins
        'GRANT pg_signal_backend TO "{{name}}";',
    ]


def _quoted(name: str) -> str:
    """A PostgreSQL identifier in double quotes, for statements Vault runs."""
    return '"' + name.replace('"', '""') + '"'


def _login_statements(db: ServiceDatabase, member_of: str, *, readonly: bool) -> list[str]:
    """Creation statements of a service login: member of `member_of`, and in its own
    database only it acts as that role (or is read-only)."""
    setting = "default_transaction_read_only = on" if readonly else f"role = {_quoted(member_of)}"
    return [
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
        f"VALID UNTIL '{{{{expiration}}}}' IN ROLE {_quoted(member_of)};",
        f'ALTER ROLE "{{{{name}}}}" IN DATABASE {_quoted(db.database)} SET {setting};',
    ]


REVOCATION = ['DROP ROLE IF EXISTS "{{name}}";']


def readonly_group(db: ServiceDatabase) -> str:
    """The NOLOGIN role holding read-only rights on the service's database."""
    return f"{db.owner}_ro"


class VaultPostgres(ServiceDatabases):
    """`ServiceDatabases` on hvac (the database engine) and psycopg (the DDL)."""

    def __init__(
        self, url: str, token: str, *, mount: str = "database", timeout: float = 10.0
    ) -> None:
        self._client: Any = hvac.Client(url=url, token=token, timeout=timeout)
        self._url = url
        self.mount = mount.strip("/")

    def __repr__(self) -> str:  # never show the token
        return f"VaultPostgres(url={self._url!r}, mount={self.mount!r})"

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except AdapterError:
            raise
        except hvac.exceptions.Forbidden as exc:
            raise VaultError(f"Vault refused to {what}: permission denied") from exc
        except hvac.exceptions.VaultError as exc:
            errors = "; ".join(str(e) for e in (exc.errors or [])) or type(exc).__name__
            raise VaultError(f"Vault could not {what}: {errors}") from exc
        except psycopg.Error as exc:
            # libpq's messages name host, port and user, never the password
            detail = exc.diag.message_primary or _first_line(exc)
            raise DatabaseError(f"could not {what}: {detail}") from exc
        except OSError as exc:
            raise VaultError(f"could not {what}: {type(exc).__name__}") from exc

    # -- the platform team's one-time step ---------------------------------------------

    def configure_server_sync(
        self,
        server: str,
        *,
        connection_url: str,
        username: str,
        password: str,
        username_template: str | None = None,
    ) -> None:
        """Mount the engine if needed and configure `database/config/<server>` (root).
        `username_template` shapes the logins' names (OpenBao's default: `v-…`)."""
        extra = {"username_template": username_template} if username_template else {}
        mounts = self._client.sys.list_mounted_secrets_engines()
        mounts = mounts.get("data", mounts)
        if f"{self.mount}/" not in mounts:
            self._client.sys.enable_secrets_engine(backend_type="database", path=self.mount)
        self._client.secrets.database.configure(
            name=server,
            plugin_name="postgresql-database-plugin",
            allowed_roles=["*"],
            connection_url=connection_url,
            username=username,
            password=password,
            mount_point=self.mount,
            **extra,
        )

    # -- Vault roles -------------------------------------------------------------------

    def _role_exists_sync(self, name: str) -> bool:
        try:
            self._client.secrets.database.read_role(name=name, mount_point=self.mount)
        except hvac.exceptions.InvalidPath:
            return False
        return True

    def _write_role_sync(
        self, name: str, server: str, creation: list[str], *, ttl: int, max_ttl: int
    ) -> None:
        self._client.secrets.database.create_role(
            name=name,
            db_name=server,
            creation_statements=creation,
            revocation_statements=REVOCATION,
            default_ttl=ttl,
            max_ttl=max_ttl,
            mount_point=self.mount,
        )

    def _delete_role_sync(self, name: str) -> bool:
        existed = self._role_exists_sync(name)
        if existed:
            self._client.secrets.database.delete_role(name=name, mount_point=self.mount)
        return existed

    def _login_sync(self, role: str) -> DatabaseLogin:
        response = self._client.secrets.database.generate_credentials(
            name=role, mount_point=self.mount
        )
        data = response["data"]
        return DatabaseLogin(
            username=str(data["username"]),
            password=str(data["password"]),
            lease_id=str(response["lease_id"]),
            ttl_seconds=int(response.get("lease_duration") or 0),
        )

    def _revoke_sync(self, lease_id: str) -> None:
        # PUT sys/leases/revoke/<lease id>: the bot's policy allows it for its own
        # admin leases only (deploy/vault/platform-bot.hcl)
        self._client.adapter.put(f"/v1/sys/leases/revoke/{lease_id}")

    def _check_connection_sync(self, server: str) -> None:
        try:
            self._client.secrets.database.read_connection(name=server, mount_point=self.mount)
        except hvac.exceptions.InvalidPath:
            raise VaultError(
                f"the PostgreSQL server {server!r} has no connection in Vault "
                f"({self.mount}/config/{server}); the platform team configures it once "
                "(docs/templates.md)"
            ) from None

    @contextlib.contextmanager
    def _admin(self, db: ServiceDatabase) -> Iterator[Callable[[str], psycopg.Connection]]:
        """A five-minute admin login from Vault (revoked when done), as a function that
        connects it to a database of the server."""
        self._check_connection_sync(db.server)
        self._write_role_sync(
            admin_role(db.server), db.server, _admin_statements(), ttl=ADMIN_TTL, max_ttl=ADMIN_TTL
        )
        login = self._login_sync(admin_role(db.server))
        opened: list[psycopg.Connection] = []

        def connect(dbname: str) -> psycopg.Connection:
            conn = psycopg.connect(
                host=db.host,
                port=db.port,
                dbname=dbname,
                user=login.username,
                password=login.password,
                sslmode=db.sslmode,
                autocommit=True,
                connect_timeout=10,
            )
            opened.append(conn)
            return conn

        try:
            yield connect
        finally:
            for conn in opened:
                conn.close()
            self._revoke_sync(login.lease_id)

    # -- the port ----------------------------------------------------------------------

    async def ensure_database(self, db: ServiceDatabase, *, ttl: str = "1h") -> list[str]:
        seconds = ttl_seconds(ttl)

        def ensure() -> list[str]:
            created: list[str] = []
            readonly = readonly_group(db)
            with self._admin(db) as connect:
                conn = connect("postgres")
                for role in (db.owner, readonly):
                    if not _role_in(conn, role):
                        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                        created.append(f"role {role}")
                # CREATE DATABASE ... OWNER needs membership of the owner
                conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(db.owner)))
                if not _database_in(conn, db.database):
                    conn.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(db.database), sql.Identifier(db.owner)
                        )
                    )
                    created.append(f"database {db.database}")
                name = sql.Identifier(db.database)
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(name))
                conn.execute(
                    sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                        name, sql.Identifier(readonly)
                    )
                )
                conn = connect(db.database)
                ro, owner = sql.Identifier(readonly), sql.Identifier(db.owner)
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ro))
                conn.execute(
                    sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(ro)
                )
                conn.execute(
                    sql.SQL(
                        "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public "
                        "GRANT SELECT ON TABLES TO {}"
                    ).format(owner, ro)
                )
            for role, member_of, is_readonly in (
                (db.vault_role, db.owner, False),
                (db.readonly_role, readonly, True),
            ):
                if not role:
                    continue
                if not self._role_exists_sync(role):
                    created.append(f"Vault role {role}")
                self._write_role_sync(
                    role,
                    db.server,
                    _login_statements(db, member_of, readonly=is_readonly),
                    ttl=seconds,
                    max_ttl=max(seconds, 24 * 3600),
                )
            return created

        created = await self._call(f"create database {db.database} on {db.server}", ensure)
        log.info("database %s on %s: %s", db.database, db.server, ", ".join(created) or "exists")
        return created

    async def describe(self, db: ServiceDatabase) -> DatabaseState:
        def read() -> DatabaseState:
            with self._admin(db) as connect:
                conn = connect("postgres")
                database, owner = _database_in(conn, db.database), _role_in(conn, db.owner)
            return DatabaseState(
                database_exists=database,
                owner_exists=owner,
                vault_role_exists=self._role_exists_sync(db.vault_role),
            )

        return await self._call(f"describe database {db.database} on {db.server}", read)

    async def drop_database(self, db: ServiceDatabase) -> list[str]:
        def drop() -> list[str]:
            removed = [
                f"Vault role {role}"
                for role in (db.vault_role, db.readonly_role)
                if role and self._delete_role_sync(role)
            ]
            with self._admin(db) as connect:
                conn = connect("postgres")
                if _database_in(conn, db.database):
                    if _role_in(conn, db.owner):
                        conn.execute(
                            sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(db.owner))
                        )
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(db.database)
                        )
                    )
                    removed.append(f"database {db.database}")
                for role in (readonly_group(db), db.owner):
                    # the logins Vault issued for the service (members of its roles)
                    for login in _members(conn, role):
                        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
                        removed.append(f"login {login}")
                    if _role_in(conn, role):
                        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
                        removed.append(f"role {role}")
            return removed

        removed = await self._call(f"drop database {db.database} on {db.server}", drop)
        log.info("database %s on %s removed: %s", db.database, db.server, ", ".join(removed))
        return removed

    async def revoke_logins(self, db: ServiceDatabase) -> None:
        def revoke() -> None:
            for role in (db.vault_role, db.readonly_role):
                if role:  # PUT sys/leases/revoke-prefix/<prefix> (sudo), synchronously
                    self._client.adapter.put(
                        f"/v1/sys/leases/revoke-prefix/{self.mount}/creds/{role}/",
                        json={"sync": True},
                    )

        await self._call(f"revoke the logins of {db.vault_role}", revoke)
        log.info("database logins of %s revoked", db.vault_role)

    async def issue_login(self, db: ServiceDatabase, *, readonly: bool = False) -> DatabaseLogin:
        role = db.readonly_role if readonly else db.vault_role
        return await self._call(f"issue a login for {role}", lambda: self._login_sync(role))


def _role_in(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is not None


def _members(conn: psycopg.Connection, role: str) -> list[str]:
    """Login roles that are members of `role` (never the bot's own admin login)."""
    rows = conn.execute(
        "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
        "JOIN pg_roles m ON m.oid = a.member "
        "WHERE r.rolname = %s AND m.rolcanlogin AND m.rolname <> current_user ORDER BY 1",
        (role,),
    ).fetchall()
    return [str(name) for (name,) in rows]


def _database_in(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
