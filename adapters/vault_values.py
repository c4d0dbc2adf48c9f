"""Vault / OpenBao for the secrets feature: one key per KV v2 secret, and the bot's
own transit key. A mixin of `VaultSecretStore` (adapters.vault), kept apart so each
module stays readable.

A service's key `KEY` in an environment is the KV v2 secret
`<team>/<service>/<env>/KEY` holding `{KEY: value}`, so every key has its own versions
(`secret rollback KEY --to-version N`) and its own custom_metadata (who set it, through
which Run). Keys are checked against `SECRET_KEY` before any path is built, so a
hostile key never reaches Vault; values are never logged and never appear in an error.

Transit (`transit/` mount, key `platform-bot`, created on first use) encrypts a value
waiting for approval and gives the short keyed hash shown on the approval card.
References: https://openbao.org/api-docs/secret/kv/kv-v2/ (cas, versions, delete,
metadata, custom_metadata) and https://openbao.org/api-docs/secret/transit/ (encrypt,
decrypt, hmac).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import hvac
import hvac.exceptions

from kernel.errors import AdapterError
from kernel.ports.systems import SecretKey

log = logging.getLogger(__name__)

T = TypeVar("T")

SECRET_KEY = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
"""A secret's key: an environment variable's name, at most 64 characters."""


class VaultError(AdapterError):
    """A Vault / OpenBao operation failed; the message names what, never a secret."""

    def __init__(self, message: str) -> None:
        super().__init__("Vault", message)


class SecretValues:
    """Keys, versions and transit, on the hvac client of the store that mixes this in."""

    _client: Any
    kv_mount: str
    transit_mount: str
    transit_key: str

    def _call(self, what: str, fn: Callable[[], T]) -> Awaitable[T]:
        raise NotImplementedError

    def _kv_path(self, team: str, service: str, env: str) -> str:
        raise NotImplementedError

    def _key_path(self, team: str, service: str, env: str, key: str) -> str:
        if not SECRET_KEY.fullmatch(key):
            # never echo it: a hostile or mistaken "key" may be a value
            raise VaultError("invalid key: use upper-case letters, digits and '_'")
        return f"{self._kv_path(team, service, env)}/{key}"

    def _metadata_sync(self, path: str) -> dict[str, Any] | None:
        try:
            response = self._client.secrets.kv.v2.read_secret_metadata(
                path=path, mount_point=self.kv_mount
            )
        except hvac.exceptions.InvalidPath:
            return None
        data: dict[str, Any] = response["data"]
        return data

    def _version_data_sync(self, path: str, version: int) -> dict[str, Any] | None:
        """The data of one version; None when it is deleted or destroyed."""
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=path, version=version, mount_point=self.kv_mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        data: dict[str, Any] | None = response["data"]["data"]
        return data

    def _write_sync(
        self, path: str, data: dict[str, str], *, cas: int, metadata: dict[str, str]
    ) -> int:
        kv = self._client.secrets.kv.v2
        meta = self._metadata_sync(path)
        current = int(meta["current_version"]) if meta else 0
        if current == cas + 1 and self._version_data_sync(path, current) == data:
            version = current  # written by an earlier attempt of the same step
        elif current != cas:
            raise VaultError(
                f"{path.rsplit('/', 1)[-1]} changed since it was asked for "
                f"(version {cas} then, {current} now); ask again"
            )
        else:
            written = kv.create_or_update_secret(
                path=path, secret=data, cas=cas, mount_point=self.kv_mount
            )
            version = int(written["data"]["version"])
        kv.update_metadata(
            path=path,
            custom_metadata=dict(metadata),
            delete_version_after="0s",
            mount_point=self.kv_mount,
        )
        return version

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
        path = self._key_path(team, service, env, key)
        version = await self._call(
            f"write {self.kv_mount}/{path}",
            lambda: self._write_sync(path, {key: value}, cas=cas, metadata=metadata),
        )
        log.info("vault wrote %s/%s version %s", self.kv_mount, path, version)
        return version

    def _key_sync(self, path: str, key: str) -> SecretKey | None:
        meta = self._metadata_sync(path)
        if meta is None:
            return None
        versions = meta.get("versions") or {}
        current = int(meta.get("current_version") or 0)
        live = tuple(
            sorted(
                int(n)
                for n, v in versions.items()
                if not v.get("deletion_time") and not v.get("destroyed")
            )
        )
        latest = versions.get(str(current)) or {}
        custom = meta.get("custom_metadata") or {}
        return SecretKey(
            key=key,
            version=current,
            updated_at=_vault_time(latest.get("created_time") or meta.get("updated_time")),
            set_by=custom.get("set_by"),
            deleted=current not in live,
            versions=live,
        )

    async def read_key(self, team: str, service: str, env: str, key: str) -> SecretKey | None:
        path = self._key_path(team, service, env, key)
        return await self._call(
            f"read KV metadata {self.kv_mount}/{path}", lambda: self._key_sync(path, key)
        )

    async def list_keys(self, team: str, service: str, env: str) -> list[SecretKey]:
        base = self._kv_path(team, service, env)

        def listing() -> list[SecretKey]:
            try:
                listed = self._client.secrets.kv.v2.list_secrets(
                    path=base, mount_point=self.kv_mount
                )
            except hvac.exceptions.InvalidPath:
                return []
            keys = [k for k in listed["data"]["keys"] if SECRET_KEY.fullmatch(k)]
            found = (self._key_sync(f"{base}/{k}", k) for k in sorted(keys))
            return [k for k in found if k is not None]

        return await self._call(f"list {self.kv_mount}/{base}", listing)

    async def delete_key(self, team: str, service: str, env: str, key: str, *, purge: bool) -> bool:
        path = self._key_path(team, service, env, key)
        kv = self._client.secrets.kv.v2

        def delete() -> bool:
            found = self._key_sync(path, key)
            if found is None or (found.deleted and not purge):
                return False
            if purge:
                kv.delete_metadata_and_all_versions(path=path, mount_point=self.kv_mount)
            else:
                kv.delete_latest_version_of_secret(path=path, mount_point=self.kv_mount)
            return True

        return await self._call(f"delete {self.kv_mount}/{path}", delete)

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
        path = self._key_path(team, service, env, key)

        def rollback() -> int:
            data = self._version_data_sync(path, to_version)
            if data is None:
                raise VaultError(f"{key} has no version {to_version} to go back to")
            return self._write_sync(path, data, cas=cas, metadata=metadata)

        return await self._call(f"roll back {self.kv_mount}/{path}", rollback)

    # -- transit: the bot's own key -----------------------------------------------

    def _ensure_transit_sync(self) -> None:
        transit = self._client.secrets.transit
        try:
            transit.read_key(name=self.transit_key, mount_point=self.transit_mount)
            return
        except hvac.exceptions.InvalidPath:
            pass
        mounts = self._client.sys.list_mounted_secrets_engines()
        mounts = mounts.get("data", mounts)
        if f"{self.transit_mount}/" not in mounts:
            self._client.sys.enable_secrets_engine("transit", path=self.transit_mount)
        transit.create_key(
            name=self.transit_key, key_type="aes256-gcm96", mount_point=self.transit_mount
        )

    def _transit_sync(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except hvac.exceptions.InvalidPath:
            self._ensure_transit_sync()  # first use: the mount or the key is missing
            return call()

    async def encrypt(self, plaintext: str) -> str:
        data = base64.b64encode(plaintext.encode()).decode()
        transit = self._client.secrets.transit

        def encrypt() -> str:
            response = transit.encrypt_data(
                name=self.transit_key, plaintext=data, mount_point=self.transit_mount
            )
            return str(response["data"]["ciphertext"])

        return await self._call(
            f"encrypt with transit key {self.transit_key}", lambda: self._transit_sync(encrypt)
        )

    async def decrypt(self, ciphertext: str) -> str:
        transit = self._client.secrets.transit

        def decrypt() -> str:
            response = transit.decrypt_data(
                name=self.transit_key, ciphertext=ciphertext, mount_point=self.transit_mount
            )
            return base64.b64decode(response["data"]["plaintext"]).decode()

        return await self._call(f"decrypt with transit key {self.transit_key}", decrypt)

    async def fingerprint(self, plaintext: str) -> str:
        data = base64.b64encode(plaintext.encode()).decode()
        transit = self._client.secrets.transit

        def hmac() -> str:
            response = transit.generate_hmac(
                name=self.transit_key,
                hash_input=data,
                algorithm="sha2-256",
                mount_point=self.transit_mount,
            )
            digest = str(response["data"]["hmac"]).rsplit(":", 1)[-1]
            return base64.b64decode(digest).hex()[:12]

        return await self._call(
            f"hash with transit key {self.transit_key}", lambda: self._transit_sync(hmac)
        )


def _vault_time(value: Any) -> datetime | None:
    """Vault's RFC 3339 timestamps (nanoseconds, `Z`) as aware datetimes."""
    if not isinstance(value, str) or not value:
        return None
    text = value.rstrip("Z")
    whole, _, fraction = text.partition(".")
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(whole + (f".{fraction[:6]}" if fraction else "")).replace(
            tzinfo=UTC
        )
    return None
