"""The real PostgreSQL on 127.0.0.1:5432 (trust) behind a real OpenBao database engine,
as the platform team sets it up: a platform admin role with CREATEDB and CREATEROLE
(not a superuser), and `database/config/<server>` holding its connection.

Everything a test creates starts with a unique prefix and is dropped afterwards.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import hvac
import psycopg
import pytest
from psycopg import sql

from adapters.postgres import VaultPostgres
from sandbox.standins.openbao import OpenBaoDevServer, OpenBaoUnavailable

PG_HOST, PG_PORT = "127.0.0.1", 5432
SERVER = "main-pg"


def superuser() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
    )


@dataclass
class PgWorld:
    server: OpenBaoDevServer
    root: hvac.Client
    prefix: str
    admin: str

    def login(self, user: str, password: str, dbname: str) -> psycopg.Connection:
        return psycopg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user=user,
            password=password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )


def drop_prefixed(prefix: str) -> None:
    """Drop every database and role whose name starts with `prefix`."""
    with superuser() as conn:
        like = prefix.replace("_", r"\_") + "%"
        for (name,) in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)
        ).fetchall():
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        for (name,) in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (like,)
        ).fetchall():
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def login_template(prefix: str) -> str:
    """Logins Vault issues start with the test's prefix, so teardown finds every one."""
    return f"{prefix}{{{{.RoleName | truncate 24}}}}-{{{{random 10}}}}"


def vault_logins_left(prefix: str) -> list[str]:
    """Logins Vault issued (v-…) that are members of one of our roles."""
    with superuser() as conn:
        rows = conn.execute(
            "SELECT m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid "
            "JOIN pg_roles m ON m.oid = a.member WHERE r.rolname LIKE %s",
            (prefix.replace("_", r"\_") + "%",),
        ).fetchall()
    return [name for (name,) in rows]


def drop_logins_of(prefix: str) -> None:
    with superuser() as conn:
        for name in vault_logins_left(prefix):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@contextmanager
def openbao_on_postgres(admin_password: str) -> Iterator[tuple[OpenBaoDevServer, str, str]]:
    """An OpenBao dev server whose database engine holds `database/config/<SERVER>`
    with a fresh platform admin role (CREATEDB, CREATEROLE); yields (server, prefix,
    admin) and afterwards stops the server and drops everything under the prefix."""
    prefix = f"pbt{secrets.token_hex(3)}_"
    admin = f"{prefix}platform_admin"
    with superuser() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CREATEDB CREATEROLE").format(
                sql.Identifier(admin), sql.Literal(admin_password)
            )
        )
    try:
        server = OpenBaoDevServer()
        server.start()
    except OpenBaoUnavailable as exc:
        drop_prefixed(prefix)
        pytest.fail(str(exc))
    try:
        VaultPostgres(server.url, server.token).configure_server_sync(
            SERVER,
            connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@{PG_HOST}:{PG_PORT}/postgres?sslmode=disable",
            username=admin,
            password=admin_password,
            username_template=login_template(prefix),
        )
        yield server, prefix, admin
    finally:
        server.stop()
        drop_logins_of(prefix)
        drop_prefixed(prefix)


@pytest.fixture(scope="module")
def pg_world() -> Iterator[PgWorld]:
    with openbao_on_postgres("admin-pw") as (server, prefix, admin):
        yield PgWorld(server, hvac.Client(url=server.url, token=server.token), prefix, admin)
