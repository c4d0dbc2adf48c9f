"""The golden path's Postgres, for real: the real PostgreSQL on this machine and a real
OpenBao database engine (tests/integration/pg_fixtures.py).

A provisioned service's credentials come from OpenBao, log in, create a table in their
own database (owned by the service's owner role, so it outlives the login), and cannot
connect to another service's database; read-only logins read and cannot write; ensure is
idempotent; drop removes the database, the roles and the Vault roles, twice over.
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

from adapters.postgres import VaultPostgres, admin_role
from adapters.vault_values import VaultError
from catalog import Catalog
from catalog.model import DatabaseServer, Environment, PlatformModel
from kernel.ports.databases import ServiceDatabase
from tests.integration.pg_fixtures import PG_HOST, PG_PORT, SERVER, PgWorld, pg_world, superuser
from tests.integration.test_template_skeletons import (
    TEMPLATES,
    child_environment,
    render_into,
    run,
)

__all__ = ["pg_world"]


def catalog(prefix: str) -> Catalog:
    return Catalog(
        PlatformModel(
            environments={
                "dev": Environment(cluster="dev-cluster", database_server=SERVER),
                "nodb": Environment(cluster="dev-cluster"),
            },
            database_servers={
                SERVER: DatabaseServer(
                    host=PG_HOST, port=PG_PORT, sslmode="disable", database_prefix=prefix
                )
            },
        )
    )


def spec(world: PgWorld, service: str) -> ServiceDatabase:
    db = catalog(world.prefix).database(service, "dev")
    assert db is not None
    return db


def owner_of_table(dbname: str, table: str) -> str:
    with psycopg.connect(
        host=PG_HOST, port=PG_PORT, user="postgres", dbname=dbname, autocommit=True
    ) as conn:
        row = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,))
        found = row.fetchone()
    assert found is not None
    return str(found[0])


async def test_a_service_gets_its_own_database_and_logins_from_openbao(pg_world: PgWorld) -> None:
    dbs = VaultPostgres(pg_world.server.url, pg_world.server.token)
    orders, billing = spec(pg_world, "orders-api"), spec(pg_world, "billing")
    assert orders.database == f"{pg_world.prefix}orders_api_dev"

    created = await dbs.ensure_database(orders)
    assert f"database {orders.database}" in created and "Vault role orders-api-dev" in created
    assert await dbs.ensure_database(orders) == []  # a retried step changes nothing
    await dbs.ensure_database(billing)
    state = await dbs.describe(orders)
    assert (state.database_exists, state.owner_exists, state.vault_role_exists) == (True,) * 3

    login = await dbs.issue_login(orders)
    assert login.username.startswith(f"{pg_world.prefix}orders-api-dev-")
    assert login.lease_id.startswith("database/creds/orders-api-dev/")
    assert 0 < login.ttl_seconds <= 3600
    with pg_world.login(login.username, login.password, orders.database) as conn:
        conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text)")
        conn.execute("INSERT INTO items (name) VALUES ('first')")
        assert conn.execute("SELECT current_user").fetchone() == (orders.owner,)
    assert owner_of_table(orders.database, "items") == orders.owner  # outlives the login

    # another service's database: no CONNECT (PUBLIC's was revoked)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        pg_world.login(login.username, login.password, billing.database)
    other = await dbs.issue_login(billing)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        pg_world.login(other.username, other.password, orders.database)

    readonly = await dbs.issue_login(orders, readonly=True)
    with pg_world.login(readonly.username, readonly.password, orders.database) as conn:
        assert conn.execute("SELECT name FROM items").fetchall() == [("first",)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO items (name) VALUES ('nope')")

    # the bot's own admin logins were revoked as soon as the DDL was done
    with superuser() as conn:
        left = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE %s",
            (f"{pg_world.prefix}platform-bot-%",),
        ).fetchall()
    assert left == []


async def test_clean_up_drops_everything_and_again_is_fine(pg_world: PgWorld) -> None:
    dbs = VaultPostgres(pg_world.server.url, pg_world.server.token)
    doomed = spec(pg_world, "doomed")
    await dbs.ensure_database(doomed)
    login = await dbs.issue_login(doomed)
    session = pg_world.login(login.username, login.password, doomed.database)  # still open

    removed = await dbs.drop_database(doomed)
    session.close()
    assert removed == [
        "Vault role doomed-dev",
        "Vault role doomed-dev-readonly",
        f"database {doomed.database}",
        f"role {doomed.owner}_ro",
        f"login {login.username}",
        f"role {doomed.owner}",
    ]
    assert await dbs.drop_database(doomed) == []  # Retry: nothing left, no error
    state = await dbs.describe(doomed)
    assert (state.database_exists, state.owner_exists, state.vault_role_exists) == (False,) * 3
    with superuser() as conn:
        gone = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login.username,))
        assert gone.fetchone() is None


async def test_a_server_without_a_vault_connection_is_a_clear_error(pg_world: PgWorld) -> None:
    dbs = VaultPostgres(pg_world.server.url, pg_world.server.token)
    unknown = ServiceDatabase(
        server="nowhere",
        host=PG_HOST,
        port=PG_PORT,
        sslmode="disable",
        database=f"{pg_world.prefix}x_dev",
        owner=f"{pg_world.prefix}x_dev_owner",
        vault_role="x-dev",
    )
    with pytest.raises(VaultError, match=r"has no connection in Vault \(database/config/nowhere\)"):
        await dbs.ensure_database(unknown)
    assert admin_role("nowhere") == "platform-bot-nowhere"


def test_names_and_environments_without_a_server() -> None:
    cat = catalog("pbt_")
    assert cat.database("orders", "nodb") is None
    assert catalog("pbt_abcdefghijkl").database("a" * 34, "dev") is not None  # 63 exactly
    with pytest.raises(ValueError, match="too long for PostgreSQL"):
        catalog("pbt_abcdefghijkl").database("a" * 35, "dev")


SKELETON_USES_THE_FILE = """
import os, sys
from app.store import PostgresStore, store_from_env
store = store_from_env({"DATABASE_URL_FILE": sys.argv[1]})
assert isinstance(store, PostgresStore), store
store.ping()
store.add("from the vault agent's file")
print([item.name for item in store.list()])
"""


async def test_the_skeleton_connects_with_the_login_vault_agent_writes(
    pg_world: PgWorld, tmp_path: Path
) -> None:
    """What the Vault Agent injector does in the pod (k8s/deployment.yaml): write
    DATABASE_URL from `database/creds/<service>-<env>` to a file; the python-fastapi
    skeleton's app reads it and works in its own database."""
    dbs = VaultPostgres(pg_world.server.url, pg_world.server.token)
    db = spec(pg_world, "skeleton")
    await dbs.ensure_database(db)
    login = await dbs.issue_login(db)
    url_file = tmp_path / "database-url"
    url_file.write_text(db.url(login.username, login.password) + "\n", encoding="utf-8")
    project = tmp_path / "project"
    project.mkdir()
    render_into(TEMPLATES["python-fastapi"], project)

    result = run(
        [sys.executable, "-c", SKELETON_USES_THE_FILE, str(url_file)],
        cwd=project,
        env=child_environment(PYTHONPATH=str(project)),
    )

    assert '["from the vault agent\'s file"]' in result.stdout
    assert owner_of_table(db.database, "items") == db.owner


async def test_rotating_revokes_every_login_of_the_service_and_new_ones_work(
    pg_world: PgWorld,
) -> None:
    dbs = VaultPostgres(pg_world.server.url, pg_world.server.token)
    db = spec(pg_world, "rotated")
    await dbs.ensure_database(db)
    old, old_ro = await dbs.issue_login(db), await dbs.issue_login(db, readonly=True)
    other = spec(pg_world, "bystander")
    await dbs.ensure_database(other)
    bystander = await dbs.issue_login(other)

    await dbs.revoke_logins(db)

    with superuser() as conn:
        names = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
    assert old.username not in names and old_ro.username not in names
    assert bystander.username in names  # another service's logins are untouched
    new = await dbs.issue_login(db)
    with pg_world.login(new.username, new.password, db.database) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (db.owner,)
