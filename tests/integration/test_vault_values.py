"""The Vault adapter's secrets part (adapters/vault_values.py) against a real OpenBao:
one KV v2 secret per key with check-and-set writes, versions, who set it, soft delete,
purge and rollback; the bot's transit key; hostile keys refused before Vault is asked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import hvac
import pytest

from adapters.vault import VaultError, VaultSecretStore
from sandbox.standins.openbao import OpenBaoDevServer, OpenBaoUnavailable

ROOT = "root"


@pytest.fixture(scope="module")
def bao_url() -> Iterator[str]:
    try:
        server = OpenBaoDevServer(token=ROOT)
        server.start()
    except OpenBaoUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def store(bao_url: str) -> VaultSecretStore:
    return VaultSecretStore(bao_url, ROOT)


@pytest.fixture
def service() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


def _data(bao_url: str, path: str, version: int | None = None) -> dict[str, str]:
    client = hvac.Client(url=bao_url, token=ROOT)
    response = client.secrets.kv.v2.read_secret_version(
        path=path, version=version, mount_point="secret", raise_on_deleted_version=True
    )
    data: dict[str, str] = response["data"]["data"]
    return data


async def test_writes_are_check_and_set_and_a_rerun_writes_nothing(
    store: VaultSecretStore, bao_url: str, service: str
) -> None:
    meta = {"set_by": "U01ALICE", "run": "r1", "via": "page"}
    assert await store.write_value("team", service, "prod", "API_KEY", "one", cas=0, metadata=meta)
    assert _data(bao_url, f"team/{service}/prod/API_KEY") == {"API_KEY": "one"}
    # the same step again after a crash: version 1 holds the value, nothing is written
    again = await store.write_value("team", service, "prod", "API_KEY", "one", cas=0, metadata=meta)
    assert again == 1
    with pytest.raises(VaultError, match="changed since it was asked for") as refused:
        await store.write_value("team", service, "prod", "API_KEY", "two", cas=0, metadata=meta)
    assert "two" not in str(refused.value)
    assert (
        await store.write_value("team", service, "prod", "API_KEY", "two", cas=1, metadata=meta)
        == 2
    )
    found = await store.read_key("team", service, "prod", "API_KEY")
    assert found is not None
    assert (found.version, found.set_by, found.deleted, found.versions) == (
        2,
        "U01ALICE",
        False,
        (1, 2),
    )
    assert found.updated_at is not None


async def test_list_delete_purge_and_rollback(
    store: VaultSecretStore, bao_url: str, service: str
) -> None:
    meta = {"set_by": "U02BOB"}
    for n, value in enumerate(("a", "b", "c")):
        await store.write_value("team", service, "dev", "TOKEN", value, cas=n, metadata=meta)
    await store.write_value("team", service, "dev", "OTHER", "x", cas=0, metadata=meta)
    assert [k.key for k in await store.list_keys("team", service, "dev")] == ["OTHER", "TOKEN"]

    assert (
        await store.rollback_key(
            "team", service, "dev", "TOKEN", to_version=1, cas=3, metadata={"set_by": "U01ALICE"}
        )
        == 4
    )
    assert _data(bao_url, f"team/{service}/dev/TOKEN") == {"TOKEN": "a"}

    assert await store.delete_key("team", service, "dev", "TOKEN", purge=False)
    assert not await store.delete_key("team", service, "dev", "TOKEN", purge=False)
    found = await store.read_key("team", service, "dev", "TOKEN")
    assert found is not None and found.deleted and found.versions == (1, 2, 3)
    with pytest.raises(VaultError, match="no version 4"):
        await store.rollback_key(
            "team", service, "dev", "TOKEN", to_version=4, cas=4, metadata=meta
        )
    assert (
        await store.rollback_key(
            "team", service, "dev", "TOKEN", to_version=2, cas=4, metadata=meta
        )
        == 5
    )
    assert _data(bao_url, f"team/{service}/dev/TOKEN") == {"TOKEN": "b"}

    assert await store.delete_key("team", service, "dev", "TOKEN", purge=True)
    assert await store.read_key("team", service, "dev", "TOKEN") is None
    assert [k.key for k in await store.list_keys("team", service, "dev")] == ["OTHER"]
    assert await store.list_keys("team", service, "nowhere") == []


@pytest.mark.parametrize(
    "key", ["lower", "../../sys/policy/root", "A/B", "A B", "X" * 65, "", "9STARTS", "A=b"]
)
async def test_a_hostile_key_never_reaches_vault(store: VaultSecretStore, key: str) -> None:
    with pytest.raises(VaultError, match="invalid key") as refused:
        await store.write_value("team", "svc", "prod", key, "v", cas=0, metadata={})
    assert key not in str(refused.value) or not key


async def test_transit_encrypts_decrypts_and_hashes_with_the_bots_key(
    store: VaultSecretStore, bao_url: str
) -> None:
    value = "p@ss wörd\nline two"
    ciphertext = await store.encrypt(value)  # creates the mount and the key on first use
    assert ciphertext.startswith("vault:v1:") and value not in ciphertext
    assert await store.decrypt(ciphertext) == value
    digest = await store.fingerprint(value)
    assert len(digest) == 12 and digest == await store.fingerprint(value)
    assert digest != await store.fingerprint(value + "!")
    keys = hvac.Client(url=bao_url, token=ROOT).secrets.transit.read_key(name="platform-bot")
    assert keys["data"]["type"] == "aes256-gcm96"
    with pytest.raises(VaultError, match="decrypt"):
        await store.decrypt("vault:v1:bm90IGEgY2lwaGVydGV4dA==")
