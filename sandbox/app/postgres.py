"""The sandbox's service databases: the real PostgreSQL on this machine (127.0.0.1:5432,
trust for `postgres`), behind the real OpenBao's database secrets engine.

What a platform team does once per server: a platform admin role with CREATEDB and
CREATEROLE (never SUPERUSER), and `database/config/<server>` holding its connection, so
the bot never sees the admin password. Every database and role the sandbox makes starts
with a fresh prefix (logins too, through the connection's username_template) and is
dropped when the sandbox stops.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from adapters.postgres import VaultPostgres

HOST, PORT = "127.0.0.1", 5432
SERVER = "sandbox-pg"


def superuser() -> psycopg.Connection:
    return psycopg.connect(
        host=HOST, port=PORT, user="postgres", dbname="postgres", autocommit=True, connect_timeout=2
    )


def postgres_reachable() -> bool:
    """The machine's PostgreSQL answers for `postgres` (the dev/CI machine's trust auth)."""
    try:
        with superuser():
            return True
    except psycopg.Error:
        return False


class SandboxPostgres:
    """Set up on start, dropped on stop; `config` is the platform.yml naming the server."""

    def __init__(self) -> None:
        self.prefix = f"sbx{secrets.token_hex(3)}_"
        self.admin = f"{self.prefix}platform_admin"

    def start(self, *, vault_url: str, root_token: str, config: Path, scratch: Path) -> Path:
        """Create the admin role, configure Vault's connection; the config to run with."""
        password = secrets.token_urlsafe(16)
        with superuser() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CREATEDB CREATEROLE").format(
                    sql.Identifier(self.admin), sql.Literal(password)
                )
            )
        VaultPostgres(vault_url, root_token).configure_server_sync(
            SERVER,
            connection_url=(
                f"postgresql://{{{{username}}}}:{{{{password}}}}@{HOST}:{PORT}/postgres"
                "?sslmode=disable"
            ),
            username=self.admin,
            password=password,
            username_template=f"{self.prefix}{{{{.RoleName | truncate 24}}}}-{{{{random 10}}}}",
        )
        model = yaml.safe_load(config.read_text(encoding="utf-8"))
        model["database_servers"] = {
            SERVER: {
                "host": HOST,
                "port": PORT,
                "sslmode": "disable",
                "database_prefix": self.prefix,
            }
        }
        for env in model.get("environments", {}).values():
            env["database_server"] = SERVER
        templates = Path(model.get("templates_dir", "templates"))  # relative to the config
        model["templates_dir"] = str(
            templates if templates.is_absolute() else (config.resolve().parent / templates)
        )
        with_databases = scratch / "platform.yml"
        with_databases.write_text(yaml.safe_dump(model, sort_keys=False), encoding="utf-8")
        return with_databases

    def stop(self) -> None:
        """Drop every database and role with the prefix (Vault's logins included)."""
        like = self.prefix.replace("_", r"\_") + "%"
        with superuser() as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (like,)
            ).fetchall():
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            for (name,) in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY rolcanlogin DESC",
                (like,),
            ).fetchall():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
