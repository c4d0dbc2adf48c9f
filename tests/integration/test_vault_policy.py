"""The shipped Vault policy (deploy/vault/platform-bot.hcl) is exactly what the bot needs.

On a real OpenBao dev server, the platform team (root token) enables Kubernetes auth and
writes the policy; the bot's token holds that policy and nothing else (not even
`default`). Then:

- every call adapters/vault.py makes while the bot runs succeeds with that token, in the
  order new-service and its clean-up make them;
- for every capability of every rule, the policy without it makes one named call fail
  with "permission denied" (so no capability is idle), and each `deny` rule is what
  stops the bot rewriting a policy it must not touch;
- what the bot must never do (read a secret's value, overwrite one, enable an auth
  method, write outside secret/<team>/<service>/<env>) is refused.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import hvac
import hvac.exceptions
import pytest

from adapters.postgres import VaultPostgres
from adapters.vault import VaultError, VaultSecretStore
from kernel.ports.databases import ServiceDatabase
from sandbox.standins.openbao import OpenBaoDevServer, throwaway_ca
from tests.integration.pg_fixtures import PG_HOST, PG_PORT, SERVER, openbao_on_postgres
from tests.unit.fakes import REPO_ROOT

POLICY_FILE = REPO_ROOT / "deploy" / "vault" / "platform-bot.hcl"
K8S = "https://kubernetes.example:6443"
_RULE = re.compile(r'path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}')


@dataclass(frozen=True)
class Rule:
    path: str
    capabilities: tuple[str, ...]


def parse(hcl: str) -> list[Rule]:
    """The policy's rules; fails on anything else in it, so the tests below see it all."""
    without_comments = "\n".join(line.split("#", 1)[0] for line in hcl.splitlines())
    rules = [
        Rule(path, tuple(re.findall(r'"([a-z]+)"', capabilities)))
        for path, capabilities in _RULE.findall(without_comments)
    ]
    rest = _RULE.sub("", without_comments).strip()
    assert not rest, f"the policy has more than path/capabilities rules: {rest[:200]!r}"
    return rules


def render(rules: list[Rule]) -> str:
    """HCL for `rules` (a rule left with no capability is dropped)."""
    blocks = []
    for rule in rules:
        if rule.capabilities:
            capabilities = ", ".join(f'"{c}"' for c in rule.capabilities)
            blocks.append(f'path "{rule.path}" {{\n  capabilities = [{capabilities}]\n}}\n')
    return "\n".join(blocks)


def without(rules: list[Rule], path: str, capability: str) -> list[Rule]:
    return [
        Rule(r.path, tuple(c for c in r.capabilities if c != capability)) if r.path == path else r
        for r in rules
    ]


SHIPPED = parse(POLICY_FILE.read_text(encoding="utf-8"))

NEEDED_BY: dict[tuple[str, str], str] = {
    # (rule path, capability): the start of the call's error once the capability is gone
    ("secret/data/+/+/+", "create"): "Vault refused to create KV path",
    ("secret/metadata/+/+/+", "read"): "Vault refused to create KV path",  # exists yet?
    ("secret/metadata/+/+/+", "delete"): "Vault refused to delete KV path",
    ("secret/metadata/+/+/+/*", "list"): "Vault refused to list",  # LIST <path>/
    ("secret/metadata/+/+/+/*", "delete"): "Vault refused to delete",
    ("secret/metadata/+/+/+/*", "read"): "Vault refused to write",  # a key's versions first
    ("secret/metadata/+/+/+/*", "update"): "Vault refused to write",  # who set it
    ("secret/data/+/+/+/*", "create"): "Vault refused to write",  # a key's first version
    ("secret/data/+/+/+/*", "update"): "Vault refused to write",  # its next one
    ("secret/data/+/+/+/*", "read"): "Vault refused to write",  # a retried write checks
    ("secret/data/+/+/+/*", "delete"): "Vault refused to delete",
    ("transit/encrypt/platform-bot", "update"): "Vault refused to encrypt",
    ("transit/decrypt/platform-bot", "update"): "Vault refused to decrypt",
    ("transit/hmac/platform-bot", "update"): "Vault refused to hash",
    ("sys/policy/*", "read"): "Vault refused to write policy",  # ensure_policy reads first
    ("sys/policy/*", "update"): "Vault refused to write policy",  # new or changed
    ("sys/policy/*", "delete"): "Vault refused to delete policy",
    ("auth/kubernetes/role/*", "create"): "Vault refused to write Kubernetes role",
    ("auth/kubernetes/role/*", "read"): "Vault refused to write Kubernetes role",
    ("auth/kubernetes/role/*", "update"): "Vault refused to write Kubernetes role",
    ("auth/kubernetes/role/*", "delete"): "Vault refused to delete Kubernetes role",
    ("database/config/+", "read"): "Vault refused to create database",
    ("database/roles/*", "create"): "Vault refused to create database",  # the first role
    ("database/roles/*", "read"): "Vault refused to create database",  # exists yet?
    ("database/roles/*", "update"): "Vault refused to create database",  # written again
    ("database/roles/*", "delete"): "Vault refused to drop database",
    ("database/creds/platform-bot-*", "read"): "Vault refused to create database",
    ("sys/leases/revoke/database/creds/platform-bot-*", "update"): (
        "Vault refused to create database"
    ),
    ("sys/leases/revoke-prefix/database/creds/*", "update"): "Vault refused to revoke the logins",
    ("sys/leases/revoke-prefix/database/creds/*", "sudo"): "Vault refused to revoke the logins",
}
"""Every capability the policy grants, and the call that fails without it."""

GUARDED = ["default", "platform-bot"]
"""Policies the bot must never write; each has a `deny` rule (`root` no one can write)."""

_names = itertools.count()


@dataclass
class OpenBao:
    server: OpenBaoDevServer
    root: hvac.Client
    prefix: str

    def bot(self, rules: list[Rule]) -> VaultSecretStore:
        """Write `rules` as the platform-bot policy; a store on a token holding only it."""
        self.server.write_policy("platform-bot", render(rules))
        return VaultSecretStore(self.server.url, self.server.token_with_only("platform-bot"))


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    """OpenBao with Kubernetes auth set up by the platform team (root), as in production."""
    with openbao_on_postgres("pw") as (server, prefix, _admin):
        root = hvac.Client(url=server.url, token=server.token)
        root.sys.enable_auth_method(method_type="kubernetes", path="kubernetes")
        root.auth.kubernetes.configure(
            kubernetes_host=K8S,
            kubernetes_ca_cert=throwaway_ca(tmp_path_factory.mktemp("ca")),
            disable_local_ca_jwt=True,
        )
        root.sys.enable_secrets_engine(backend_type="transit", path="transit")
        root.secrets.transit.create_key(name="platform-bot", key_type="aes256-gcm96")
        yield OpenBao(server, root, prefix)


async def new_service_then_clean_up(store: VaultSecretStore, root: hvac.Client) -> None:
    """Every call the bot makes, as new-service (twice, as a retried step does, then with
    changes) and its clean-up make them; each checked for its effect."""
    service = f"svc{next(_names)}"
    team, env = "payments", "dev"
    name = f"{team}-{service}-{env}"

    path = await store.ensure_kv_path(team, service, env)
    assert path == f"{team}/{service}/{env}"
    assert await store.ensure_kv_path(team, service, env) == path
    assert await store.kv_exists(team, service, env)

    assert await store.ensure_policy(name, [path]) is True
    assert await store.ensure_policy(name, [path]) is False
    assert await store.ensure_policy(name, [path, f"{team}/{service}/shared"]) is True
    assert f"secret/data/{team}/{service}/shared" in (await store.read_policy(name) or "")

    role = {"service_account": service, "namespace": f"{service}-{env}", "policies": [name]}
    assert await store.ensure_kubernetes_role(name, **role) is True
    assert await store.ensure_kubernetes_role(name, **role) is False
    assert await store.ensure_kubernetes_role(name, **role, ttl="30m") is True
    read = await store.read_kubernetes_role(name)
    assert read is not None and read["token_ttl"] == 1800

    described = await store.describe(team, service, env, policy=name, role=name)
    assert (described.kv_exists, described.policy_exists, described.role_exists) == (
        True,
        True,
        True,
    )

    # the team stores its secrets below the path; clean-up removes those too
    root.secrets.kv.v2.create_or_update_secret(
        path=f"{path}/db", secret={"password": "team-secret"}, mount_point="secret"
    )
    for _ in range(2):  # the second time, everything is gone already
        await store.delete_service(team, service, env, policy=name, role=name)
    gone = await store.describe(team, service, env, policy=name, role=name)
    assert (gone.kv_exists, gone.policy_exists, gone.role_exists) == (False, False, False)


async def secrets_round_trip(store: VaultSecretStore) -> None:
    """Every call `/platform secret` makes (features/secrets), each checked for its
    effect: transit for a value waiting for approval, then a key's life."""
    ciphertext = await store.encrypt("s3cr3t-value")
    assert ciphertext.startswith("vault:v1:")
    assert await store.decrypt(ciphertext) == "s3cr3t-value"
    assert len(await store.fingerprint("s3cr3t-value")) == 12

    service = f"svc{next(_names)}"
    team, env, meta = "payments", "dev", {"set_by": "U01ALICE"}
    assert await store.write_value(team, service, env, "API_KEY", "v1", cas=0, metadata=meta) == 1
    assert await store.write_value(team, service, env, "API_KEY", "v2", cas=1, metadata=meta) == 2
    # a retried step: version 2 already holds this value, nothing is written twice
    assert await store.write_value(team, service, env, "API_KEY", "v2", cas=1, metadata=meta) == 2
    key = await store.read_key(team, service, env, "API_KEY")
    assert key is not None and (key.version, key.set_by) == (2, "U01ALICE")
    assert [k.key for k in await store.list_keys(team, service, env)] == ["API_KEY"]
    assert (
        await store.rollback_key(team, service, env, "API_KEY", to_version=1, cas=2, metadata=meta)
        == 3
    )
    assert await store.delete_key(team, service, env, "API_KEY", purge=False) is True
    assert await store.delete_key(team, service, env, "API_KEY", purge=True) is True
    assert await store.read_key(team, service, env, "API_KEY") is None


async def databases_round_trip(store: VaultSecretStore, prefix: str) -> None:
    """Every call the `postgres` step and its clean-up make, on the real PostgreSQL."""
    dbs = VaultPostgres(store._url, store._client.token)
    n = next(_names)
    db = ServiceDatabase(
        server=SERVER,
        host=PG_HOST,
        port=PG_PORT,
        sslmode="disable",
        database=f"{prefix}svc{n}_dev",
        owner=f"{prefix}svc{n}_dev_owner",
        vault_role=f"svc{n}-dev",
        readonly_role=f"svc{n}-dev-readonly",
    )
    assert await dbs.ensure_database(db)
    assert await dbs.ensure_database(db) == []  # a retried step: every role written again
    assert (await dbs.describe(db)).database_exists
    await dbs.revoke_logins(db)  # `secret rotate ... database`
    assert await dbs.drop_database(db)
    assert not (await dbs.describe(db)).database_exists


async def every_call(store: VaultSecretStore, root: hvac.Client, prefix: str) -> None:
    await secrets_round_trip(store)
    await new_service_then_clean_up(store, root)
    await databases_round_trip(store, prefix)


async def test_every_call_the_bot_makes_succeeds_with_only_the_shipped_policy(
    bao: OpenBao,
) -> None:
    await every_call(bao.bot(SHIPPED), bao.root, bao.prefix)


async def test_a_path_another_replica_created_meanwhile_is_not_an_error(
    bao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = bao.bot(SHIPPED)
    bao.root.secrets.kv.v2.create_or_update_secret(
        path="payments/raced/dev", secret={"x": "y"}, mount_point="secret"
    )
    real, looks = store._kv_exists_sync, []

    def exists(path: str) -> bool:  # the first look says "not yet": another replica wins
        looks.append(path)
        return len(looks) > 1 and real(path)

    monkeypatch.setattr(store, "_kv_exists_sync", exists)

    # the write is an update of an existing path, refused (403) with `create` only
    assert await store.ensure_kv_path("payments", "raced", "dev") == "payments/raced/dev"
    assert len(looks) == 2


def test_every_capability_is_accounted_for() -> None:
    granted = {
        (rule.path, capability)
        for rule in SHIPPED
        for capability in rule.capabilities
        if capability != "deny"
    }
    assert granted == set(NEEDED_BY), "a capability with no call needing it, or the reverse"
    denied = {rule.path for rule in SHIPPED if rule.capabilities == ("deny",)}
    assert denied == {f"sys/policy/{name}" for name in GUARDED}


@pytest.mark.parametrize(("path", "capability"), sorted(NEEDED_BY))
async def test_without_one_capability_the_call_that_needs_it_fails(
    bao: OpenBao, path: str, capability: str
) -> None:
    store = bao.bot(without(SHIPPED, path, capability))

    with pytest.raises(VaultError) as refused:
        await every_call(store, bao.root, bao.prefix)

    message = refused.value.message
    assert message.startswith(NEEDED_BY[path, capability]), message
    assert "permission denied" in message


def _write_policy(store_token: str, url: str, name: str) -> None:
    hvac.Client(url=url, token=store_token).sys.create_or_update_policy(
        name=name, policy='path "*" { capabilities = ["sudo", "read", "update"] }'
    )


@pytest.mark.parametrize("name", GUARDED)
def test_the_bot_cannot_rewrite_a_guarded_policy_and_its_deny_rule_is_why(
    bao: OpenBao, name: str
) -> None:
    bao.server.write_policy("platform-bot", render(SHIPPED))
    token = bao.server.token_with_only("platform-bot")
    with pytest.raises(hvac.exceptions.Forbidden):
        _write_policy(token, bao.server.url, name)

    before = bao.root.sys.read_policy(name=name)["data"]["rules"]
    loosened = [rule for rule in SHIPPED if rule.path != f"sys/policy/{name}"]
    bao.server.write_policy("platform-bot", render(loosened))
    token = bao.server.token_with_only("platform-bot")
    try:
        _write_policy(token, bao.server.url, name)  # the deny rule was all that stopped it
    finally:
        bao.root.sys.create_or_update_policy(name=name, policy=before)
        bao.server.write_policy("platform-bot", render(SHIPPED))


def test_what_the_bot_must_never_do_is_refused(bao: OpenBao) -> None:
    bao.server.write_policy("platform-bot", render(SHIPPED))
    bot = hvac.Client(url=bao.server.url, token=bao.server.token_with_only("platform-bot"))
    bao.root.secrets.kv.v2.create_or_update_secret(
        path="payments/checkout/prod", secret={"api_key": "s3cr3t"}, mount_point="secret"
    )
    kv = bot.secrets.kv.v2
    refused = {
        "read a secret's value": lambda: kv.read_secret_version(
            path="payments/checkout/prod", mount_point="secret", raise_on_deleted_version=True
        ),
        "overwrite a secret": lambda: kv.create_or_update_secret(
            path="payments/checkout/prod", secret={"api_key": "x"}, mount_point="secret"
        ),
        "write beside the service paths": lambda: kv.create_or_update_secret(
            path="payments/checkout", secret={"a": "b"}, mount_point="secret"
        ),
        "enable an auth method": lambda: bot.sys.enable_auth_method(
            method_type="userpass", path="userpass"
        ),
        "reconfigure Kubernetes auth": lambda: bot.auth.kubernetes.configure(
            kubernetes_host="https://evil.example", disable_local_ca_jwt=True
        ),
        "mount a secrets engine": lambda: bot.sys.enable_secrets_engine(
            backend_type="kv", path="other"
        ),
        "create a token": lambda: bot.auth.token.create(policies=["platform-bot"]),
        "read a service's database login": lambda: bot.secrets.database.generate_credentials(
            name="checkout-prod"
        ),
        "repoint a server's admin connection": lambda: bot.secrets.database.configure(
            name=SERVER,
            plugin_name="postgresql-database-plugin",
            connection_url="postgresql://evil.example/postgres",
        ),
        "rotate a server's admin password": lambda: bot.secrets.database.rotate_root_credentials(
            name=SERVER
        ),
    }
    allowed = []
    for what, call in refused.items():
        try:
            call()
        except hvac.exceptions.Forbidden:
            continue
        allowed.append(what)
    assert allowed == []
    with pytest.raises(hvac.exceptions.InvalidRequest, match='cannot update "root" policy'):
        _write_policy(bot.token, bao.server.url, "root")  # no one may


async def test_the_sandbox_and_e2e_bot_holds_only_the_shipped_policy() -> None:
    from sandbox.app.stack import sandbox_stack

    async with sandbox_stack(vault=True) as stack:
        token = stack.bot.settings.vault_token
        assert token is not None and token.get_secret_value() == stack.vault_bot_token
        assert stack.vault_url is not None
        root = hvac.Client(url=stack.vault_url, token=stack.vault_token)
        looked_up = root.auth.token.lookup(stack.vault_bot_token)["data"]
        shipped = root.sys.read_policy(name="platform-bot")["data"]["rules"]

    assert looked_up["policies"] == ["platform-bot"]  # not even `default`
    assert shipped == POLICY_FILE.read_text(encoding="utf-8")
