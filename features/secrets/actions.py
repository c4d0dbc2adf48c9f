"""The Actions of secrets: set, delete and roll back one key of a service's secrets.

None of them holds a value. `SetSecret` names the value waiting for it (encrypted by
Vault's transit engine, in `secret_pending`) and shows people only its length and a
short keyed hash, so an approval card, an audit line or a progress message can never
show a secret; its fingerprint still changes with the value (the hash is in it).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from kernel.actions import Action
from kernel.errors import UsageError
from kernel.mrkdwn import code, escape

KEY_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
"""A key is an environment variable's name: `DATABASE_URL`, at most 64 characters."""
MAX_VALUE_BYTES = 32 * 1024
"""Largest value accepted (a certificate chain fits; a file does not belong here)."""

NOT_A_KEY = (
    "That is not a key name. A key is upper-case letters, digits and `_`, starting with a "
    "letter or `_`, at most 64 characters, like `DATABASE_URL`. (What you typed is not "
    "shown here, in case it was a secret.)"
)


def check_key(text: str, *, usage: str | None = None) -> str:
    """The key as typed, if it is one; a UsageError that never echoes it otherwise."""
    if not KEY_PATTERN.fullmatch(text):
        raise UsageError(NOT_A_KEY, usage=usage)
    return text


def check_value(value: str) -> str | None:
    """Why `value` cannot be stored (for the person who typed it), or None."""
    if not value:
        return "The value is empty; paste the secret into the box."
    if "\x00" in value:
        return "The value contains a NUL character; secrets here are text."
    size = len(value.encode())
    if size > MAX_VALUE_BYTES:
        return (
            f"The value is {size:,} bytes; values are at most {MAX_VALUE_BYTES:,} bytes. "
            "Nothing was stored."
        )
    return None


class SecretChange(Action):
    """What every secret Action names: one key of one service in one environment."""

    service: str
    env: str
    team: str
    key: str

    @property
    def where(self) -> str:
        return f"`{escape(self.service)}` in `{escape(self.env)}`"

    @property
    def path(self) -> str:
        """Where the key lives in Vault (KV v2 on the `secret` mount)."""
        return f"secret/{self.team}/{self.service}/{self.env}/{self.key}"

    def lock_key(self) -> str:
        return f"secret:{self.service}/{self.env}/{self.key}"


class SetSecret(SecretChange):
    """Write a new version of one key from a value the bot received privately."""

    kind: ClassVar[str] = "secret.set"

    pending_id: str
    """The encrypted value waiting for this Run (features.secrets.tables)."""
    length: int
    digest: str
    """Transit HMAC of the value, first 12 hex digits: tells two values apart, reveals none."""
    from_version: int
    """The key's version when asked (0: new key); Vault refuses if it moved since."""
    via: Literal["page", "modal"] = "page"

    def summary(self) -> str:
        return f"set secret {self.key} of {self.service} in {self.env}"

    def change_lines(self) -> list[str]:
        after = "new key" if self.from_version == 0 else f"version {self.from_version} -> next"
        where = "a private page" if self.via == "page" else "a Slack modal"
        return [
            f"{code(self.key)} of {self.where} ({after}) at {code(self.path)}",
            f"the value: {self.length} characters, keyed hash {code(self.digest)}, "
            f"received through {where}; never shown",
        ]


class DeleteSecret(SecretChange):
    """Delete one key's current version (older ones stay for rollback), or purge it."""

    kind: ClassVar[str] = "secret.delete"

    from_version: int
    purge: bool = False

    def summary(self) -> str:
        how = "purge every version of" if self.purge else "delete"
        return f"{how} secret {self.key} of {self.service} in {self.env}"

    def change_lines(self) -> list[str]:
        if self.purge:
            return [f"{code(self.key)} of {self.where}: every version destroyed, for good"]
        return [
            f"{code(self.key)} of {self.where}: version {self.from_version} deleted "
            "(older versions stay; `secret rollback` brings one back)"
        ]


class RollbackSecret(SecretChange):
    """Make an earlier version of one key the current one (as `vault kv rollback`)."""

    kind: ClassVar[str] = "secret.rollback"

    to_version: int
    from_version: int

    def summary(self) -> str:
        where = f"{self.key} of {self.service} in {self.env}"
        return f"roll back secret {where} to version {self.to_version}"

    def change_lines(self) -> list[str]:
        return [
            f"{code(self.key)} of {self.where}: version {self.to_version}'s value becomes "
            f"version {self.from_version + 1} (now {self.from_version})"
        ]


class RotateDatabaseLogins(Action):
    """`secret rotate <service> <env> database`: end every login Vault's database engine
    issued for the service (its own and the read-only ones). Each is dropped on the
    server; the service's Vault Agents fetch new ones at once. Holds no credential."""

    kind: ClassVar[str] = "secret.rotate-database"

    service: str
    env: str
    team: str
    database: str
    vault_role: str

    def lock_key(self) -> str:
        return f"database:{self.service}/{self.env}"

    def summary(self) -> str:
        return f"rotate the database logins of {self.service} in {self.env}"

    def change_lines(self) -> list[str]:
        return [
            f"every login of {code(self.database)} issued by `database/creds/"
            f"{escape(self.vault_role)}` (and `-readonly`) revoked and dropped; the "
            "service's Vault Agents fetch new ones, open sessions end at their next reconnect"
        ]
