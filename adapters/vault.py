"""Vault / OpenBao: the secrets part of the golden path.

A new service gets a KV v2 path `secret/<team>/<service>/<env>`, an ACL policy limited
to that path, and a Kubernetes auth role bound to its service account and namespace.
`SecretStore` is what commands and executors see; `VaultSecretStore` is the real
implementation on hvac. hvac blocks, so every call runs in `asyncio.to_thread`.

Every `ensure_*` operation is idempotent (a Run step may execute again after a crash),
and `delete_service` tolerates what is already gone. Secret values are never logged and
never appear in a `VaultError` message: errors name the operation and the path only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions

from adapters.vault_values import SecretValues, VaultError
from kernel.ports.systems import SecretKey, SecretStore, ServiceSecrets

__all__ = ["SecretKey", "SecretStore", "ServiceSecrets", "VaultError", "VaultSecretStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SEGMENT = re.compile(r"^[a-z0-9](?:[a-z0-9_.-]{0,61}[a-z0-9])?$")
"""One path segment, policy or role name: lower-case DNS-label-like, so no HCL or path
injection (`*`, `+`, `..`, quotes, slashes) can reach a policy or a URL."""

_TTL = re.compile(r"^(\d+)([smhd]?)$")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

PLACEHOLDER: dict[str, str] = {"_created_by": "platform-bot"}
"""What a new KV path holds until the team writes real secrets: no secret, a marker."""


def kv_path(team: str, service: str, env: str) -> str:
    """The KV path (relative to the mount) of a service in an environment."""
    for what, value in (("team", team), ("service", service), ("env", env)):
        _check_name(what, value)
    return f"{team}/{service}/{env}"


def _check_name(what: str, value: str) -> None:
    if not _SEGMENT.fullmatch(value):
        raise VaultError(
            f"invalid {what} {value!r}: use lower-case letters, digits, '-', '_' or '.'"
        )


def _check_path(path: str) -> None:
    segments = path.split("/")
    if not segments or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise VaultError(f"invalid KV path {path!r}: use segments like team/service/env")


def ttl_seconds(ttl: str) -> int:
    """`"1h"` -> 3600; accepts plain seconds and s/m/h/d suffixes."""
    match = _TTL.fullmatch(ttl.strip())
    if match is None:
        raise VaultError(f"invalid ttl {ttl!r}: use e.g. 3600, 30m, 1h or 1d")
    return int(match.group(1)) * _TTL_UNITS[match.group(2)]


_READ_PATH = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_.-]*)+$")


def policy_hcl(kv_mount: str, paths: list[str], read_paths: list[str] | None = None) -> str:
    """An ACL policy limited to `paths` (and what is below them) on a KV v2 mount, and
    `read` on exactly each of `read_paths` (a service's database logins)."""
    blocks: list[str] = []
    for path in read_paths or []:
        if not _READ_PATH.fullmatch(path):
            raise VaultError(f"invalid Vault path {path!r} for a read rule")
        blocks.append(f'path "{path}" {{\n  capabilities = ["read"]\n}}\n')
    for path in paths:
        _check_path(path)
        for suffix in ("", "/*"):
            blocks.append(
                f'path "{kv_mount}/data/{path}{suffix}" {{\n'
                '  capabilities = ["create", "read", "update", "delete", "list"]\n'
                "}\n"
            )
        for suffix in ("", "/*"):
            blocks.append(
                f'path "{kv_mount}/metadata/{path}{suffix}" {{\n'
                '  capabilities = ["read", "list"]\n'
                "}\n"
            )
    return "\n".join(blocks)


class VaultSecretStore(SecretValues):
    """`SecretStore` on hvac, against Vault or OpenBao."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        kv_mount: str = "secret",
        kubernetes_auth_mount: str = "kubernetes",
        transit_mount: str = "transit",
        transit_key: str = "platform-bot",
        timeout: float = 10.0,
    ) -> None:
        self._client: Any = hvac.Client(url=url, token=token, timeout=timeout)
        self._url = url
        self.kv_mount = kv_mount.strip("/")
        self.kubernetes_auth_mount = kubernetes_auth_mount.strip("/")
        self.transit_mount = transit_mount.strip("/")
        self.transit_key = transit_key

    def __repr__(self) -> str:  # never show the token
        return f"VaultSecretStore(url={self._url!r}, kv_mount={self.kv_mount!r})"

    def _kv_path(self, team: str, service: str, env: str) -> str:
        return kv_path(team, service, env)

    async def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run a blocking hvac call in a thread; turn its failures into `VaultError`."""
        try:
            return await asyncio.to_thread(fn)
        except VaultError:
            raise
        except hvac.exceptions.Forbidden as exc:
            raise VaultError(
                f"Vault refused to {what}: permission denied (check VAULT_TOKEN and its policies)"
            ) from exc
        except hvac.exceptions.Unauthorized as exc:
            raise VaultError(f"Vault refused to {what}: the token is not valid") from exc
        except hvac.exceptions.VaultError as exc:
            errors = "; ".join(str(e) for e in (exc.errors or [])) or type(exc).__name__
            raise VaultError(f"Vault could not {what}: {errors}") from exc
        except OSError as exc:  # requests' exceptions are OSErrors
            raise VaultError(
                f"Vault could not {what}: cannot reach {self._url} ({type(exc).__name__})"
            ) from exc

    # -- KV v2 ----------------------------------------------------------------

    def _kv_exists_sync(self, path: str) -> bool:
        try:
            self._client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.kv_mount)
        except hvac.exceptions.InvalidPath:
            return False
        return True

    async def ensure_kv_path(self, team: str, service: str, env: str) -> str:
        path = kv_path(team, service, env)

        def ensure() -> bool:
            if self._kv_exists_sync(path):
                return False
            try:
                # cas=0: write only if the key does not exist yet, so a race never overwrites
                self._client.secrets.kv.v2.create_or_update_secret(
                    path=path, secret=PLACEHOLDER, cas=0, mount_point=self.kv_mount
                )
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
                # someone else created it meanwhile: the check-and-set refuses (400), or,
                # with only `create` on the path (deploy/vault/platform-bot.hcl), Vault
                # refuses the write to an existing path as an update (403)
                if self._kv_exists_sync(path):
                    return False
                raise
            return True

        created = await self._call(f"create KV path {self.kv_mount}/{path}", ensure)
        log.info("vault kv path %s/%s %s", self.kv_mount, path, "created" if created else "exists")
        return path

    async def kv_exists(self, team: str, service: str, env: str) -> bool:
        """Whether the KV path has metadata (any version, even deleted)."""
        path = kv_path(team, service, env)
        return await self._call(
            f"read KV metadata {self.kv_mount}/{path}", lambda: self._kv_exists_sync(path)
        )

    def _delete_kv_tree_sync(self, path: str) -> None:
        kv = self._client.secrets.kv.v2
        try:
            listed = kv.list_secrets(path=path, mount_point=self.kv_mount)
            keys: list[str] = listed["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            keys = []
        for key in keys:
            self._delete_kv_tree_sync(f"{path}/{key.rstrip('/')}")
        kv.delete_metadata_and_all_versions(path=path, mount_point=self.kv_mount)

    # -- policies -------------------------------------------------------------

    def _read_policy_sync(self, name: str) -> str | None:
        try:
            response = self._client.sys.read_policy(name=name)
        except hvac.exceptions.InvalidPath:
            return None
        data = response.get("data", response)
        rules = data.get("rules") or data.get("policy")
        return str(rules) if rules is not None else None

    async def ensure_policy(
        self, name: str, paths: list[str], *, read_paths: list[str] | None = None
    ) -> bool:
        _check_name("policy name", name)
        if not paths:
            raise VaultError(f"policy {name!r} needs at least one path")
        wanted = policy_hcl(self.kv_mount, paths, read_paths)

        def ensure() -> bool:
            current = self._read_policy_sync(name)
            if current is not None and current.strip() == wanted.strip():
                return False
            self._client.sys.create_or_update_policy(name=name, policy=wanted, pretty_print=False)
            return True

        changed = await self._call(f"write policy {name}", ensure)
        log.info("vault policy %s %s", name, "written" if changed else "unchanged")
        return changed

    async def read_policy(self, name: str) -> str | None:
        """The policy's HCL, or None if there is no such policy."""
        _check_name("policy name", name)
        return await self._call(f"read policy {name}", lambda: self._read_policy_sync(name))

    # -- Kubernetes auth ------------------------------------------------------

    async def ensure_kubernetes_auth(
        self, host: str, *, ca_cert: str | None = None, disable_local_ca_jwt: bool = False
    ) -> bool:
        """Enable Kubernetes auth at the mount if missing and point it at `host`.

        Vault needs the cluster's CA: pass `ca_cert` (PEM), or leave it None when Vault runs
        in that cluster and reads its pod's CA and JWT; `disable_local_ca_jwt=True` stops
        that (Vault outside the cluster, API server with a publicly trusted certificate).
        """
        mount = self.kubernetes_auth_mount

        def ensure() -> bool:
            changed = False
            methods = self._client.sys.list_auth_methods()
            methods = methods.get("data", methods)
            if f"{mount}/" not in methods:
                self._client.sys.enable_auth_method(method_type="kubernetes", path=mount)
                changed = True
            try:
                config = self._client.auth.kubernetes.read_config(mount_point=mount)
            except hvac.exceptions.InvalidPath:
                config = {}
            current = (
                config.get("kubernetes_host"),
                (config.get("kubernetes_ca_cert") or "").strip() or None,
                bool(config.get("disable_local_ca_jwt")),
            )
            wanted = (host, (ca_cert or "").strip() or None, disable_local_ca_jwt)
            if current != wanted:
                self._client.auth.kubernetes.configure(
                    kubernetes_host=host,
                    kubernetes_ca_cert=ca_cert,
                    disable_local_ca_jwt=disable_local_ca_jwt,
                    mount_point=mount,
                )
                changed = True
            return changed

        changed = await self._call(f"enable Kubernetes auth at auth/{mount}", ensure)
        log.info("vault kubernetes auth at %s %s", mount, "configured" if changed else "unchanged")
        return changed

    def _read_role_sync(self, name: str) -> dict[str, Any] | None:
        try:
            role: dict[str, Any] = self._client.auth.kubernetes.read_role(
                name=name, mount_point=self.kubernetes_auth_mount
            )
        except hvac.exceptions.InvalidPath:
            return None
        return role

    async def ensure_kubernetes_role(
        self,
        name: str,
        *,
        service_account: str,
        namespace: str,
        policies: list[str],
        ttl: str = "1h",
    ) -> bool:
        _check_name("role name", name)
        _check_name("service account", service_account)
        _check_name("namespace", namespace)
        for policy in policies:
            _check_name("policy name", policy)
        seconds = ttl_seconds(ttl)
        mount = self.kubernetes_auth_mount

        def ensure() -> bool:
            current = self._read_role_sync(name)
            if current is not None and (
                list(current.get("bound_service_account_names") or []) == [service_account]
                and list(current.get("bound_service_account_namespaces") or []) == [namespace]
                and sorted(current.get("token_policies") or []) == sorted(policies)
                and current.get("token_ttl") == seconds
            ):
                return False
            self._client.auth.kubernetes.create_role(
                name=name,
                bound_service_account_names=[service_account],
                bound_service_account_namespaces=[namespace],
                policies=list(policies),
                ttl=f"{seconds}s",
                mount_point=mount,
            )
            return True

        changed = await self._call(f"write Kubernetes role auth/{mount}/role/{name}", ensure)
        log.info("vault kubernetes role %s %s", name, "written" if changed else "unchanged")
        return changed

    async def read_kubernetes_role(self, name: str) -> dict[str, Any] | None:
        """The role as Vault returns it, or None if there is no such role."""
        _check_name("role name", name)
        return await self._call(f"read Kubernetes role {name}", lambda: self._read_role_sync(name))

    # -- whole service --------------------------------------------------------

    async def describe(
        self, team: str, service: str, env: str, *, policy: str, role: str
    ) -> ServiceSecrets:
        path = kv_path(team, service, env)
        _check_name("policy name", policy)
        _check_name("role name", role)

        def read() -> ServiceSecrets:
            return ServiceSecrets(
                path=path,
                kv_exists=self._kv_exists_sync(path),
                policy_exists=self._read_policy_sync(policy) is not None,
                role_exists=self._read_role_sync(role) is not None,
            )

        return await self._call(f"describe {self.kv_mount}/{path}", read)

    async def delete_service(
        self, team: str, service: str, env: str, *, policy: str, role: str
    ) -> None:
        path = kv_path(team, service, env)
        _check_name("policy name", policy)
        _check_name("role name", role)
        mount = self.kubernetes_auth_mount

        def delete_role() -> None:
            # InvalidPath: already gone, or the auth method is not enabled
            with contextlib.suppress(hvac.exceptions.InvalidPath):
                self._client.auth.kubernetes.delete_role(name=role, mount_point=mount)

        def delete_policy() -> None:
            with contextlib.suppress(hvac.exceptions.InvalidPath):
                self._client.sys.delete_policy(name=policy)

        await self._call(f"delete Kubernetes role {role}", delete_role)
        await self._call(f"delete policy {policy}", delete_policy)
        await self._call(
            f"delete KV path {self.kv_mount}/{path}", lambda: self._delete_kv_tree_sync(path)
        )
        log.info("vault deleted %s/%s, policy %s, role %s", self.kv_mount, path, policy, role)
