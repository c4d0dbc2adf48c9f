"""Carrying out secret changes: the steps of SetSecret, DeleteSecret and RollbackSecret.

Each step checks before it changes (Vault's check-and-set does the checking for writes:
a re-run after a crash finds its own version already there and writes nothing). The
value of a SetSecret is decrypted from the pending row only inside its step, written,
and the pending row deleted; it is never a step output, a progress line or an audit
detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from features.kit.context import Ports
from features.secrets.actions import (
    DeleteSecret,
    RollbackSecret,
    RotateDatabaseLogins,
    SecretChange,
    SetSecret,
)
from features.secrets.desk import SecretsDesk
from kernel.actions import Action, Executor, Step, StepContext
from kernel.errors import AdapterError, StepFailed, adapter_call
from kernel.mrkdwn import code
from kernel.ports.platform import AuditEntry


class _SecretExecutor:
    """What the three share: Vault, the audit line, and the staleness check."""

    def __init__(self, ports: Ports, desk: SecretsDesk) -> None:
        self.ports, self.desk = ports, desk

    async def current_version(self, action: SecretChange) -> tuple[int, bool]:
        """(the key's current version, 0 when there is none; whether it is deleted)."""
        vault = self.ports.adapters.require("vault")
        found = await adapter_call(
            vault.read_key(action.team, action.service, action.env, action.key)
        )
        return (found.version, found.deleted) if found is not None else (0, False)

    async def stale_reason(self, action: Action) -> str | None:
        """Why an approved change no longer fits: someone changed the key meanwhile."""
        assert isinstance(action, SecretChange)
        try:
            version, _ = await self.current_version(action)
        except (AdapterError, StepFailed):  # Vault away: the Run's step will say so
            return None
        wanted = getattr(action, "from_version", version)
        if version == wanted:
            return None
        return (
            f"{code(action.key)} is at version {version} now, not {wanted} as when this was "
            "asked; ask again"
        )

    async def audit(self, context: StepContext, event: str, detail: dict[str, Any]) -> None:
        await self.ports.audit.record(
            AuditEntry.of(
                context.requested_by,
                event,
                action=context.action,
                run_id=context.run_id,
                detail=detail,
            )
        )


class SetSecretExecutor(_SecretExecutor):
    action_type: ClassVar[type[Action]] = SetSecret

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, SetSecret)

        async def write(context: StepContext) -> dict[str, Any]:
            vault = self.ports.adapters.require("vault")
            ciphertext = await self.desk.pending_ciphertext(action.pending_id)
            if ciphertext is None:
                raise StepFailed(
                    "the value waiting for this Run was discarded (rejected, expired, or kept "
                    "over a day); set it again with `/platform secret set`"
                )
            version = await adapter_call(
                vault.write_value(
                    action.team,
                    action.service,
                    action.env,
                    action.key,
                    await adapter_call(vault.decrypt(ciphertext)),
                    cas=action.from_version,
                    metadata={
                        "set_by": context.requested_by,
                        "run": context.run_id,
                        "via": action.via,
                    },
                )
            )
            await self.desk.discard(action.pending_id)
            await self.audit(
                context,
                "secret.written",
                {"key": action.key, "version": version, "hash": action.digest},
            )
            return {"version": version}

        return [Step("write", f"Write {action.key} to Vault ({action.length} characters)", write)]


class DeleteSecretExecutor(_SecretExecutor):
    action_type: ClassVar[type[Action]] = DeleteSecret

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, DeleteSecret)

        async def remove(context: StepContext) -> dict[str, Any]:
            vault = self.ports.adapters.require("vault")
            deleted = await adapter_call(
                vault.delete_key(
                    action.team, action.service, action.env, action.key, purge=action.purge
                )
            )
            await self.audit(context, "secret.deleted", {"key": action.key, "purge": action.purge})
            return {"deleted": deleted}

        title = "Destroy every version of" if action.purge else "Delete the current version of"
        return [Step("delete", f"{title} {action.key}", remove)]


class RollbackSecretExecutor(_SecretExecutor):
    action_type: ClassVar[type[Action]] = RollbackSecret

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, RollbackSecret)

        async def rollback(context: StepContext) -> dict[str, Any]:
            vault = self.ports.adapters.require("vault")
            version = await adapter_call(
                vault.rollback_key(
                    action.team,
                    action.service,
                    action.env,
                    action.key,
                    to_version=action.to_version,
                    cas=action.from_version,
                    metadata={
                        "set_by": context.requested_by,
                        "run": context.run_id,
                        "via": f"rollback to {action.to_version}",
                    },
                )
            )
            await self.audit(
                context,
                "secret.rolled_back",
                {"key": action.key, "to_version": action.to_version, "version": version},
            )
            return {"version": version}

        return [Step("rollback", f"Put version {action.to_version} of {action.key} back", rollback)]


class RotateDatabaseExecutor(_SecretExecutor):
    action_type: ClassVar[type[Action]] = RotateDatabaseLogins

    async def stale_reason(self, action: Action) -> str | None:
        """Rotating is never stale: it revokes whatever logins exist when it runs."""
        return None

    def steps(self, action: Action) -> Sequence[Step]:
        assert isinstance(action, RotateDatabaseLogins)

        async def rotate(context: StepContext) -> dict[str, Any]:
            db = self.ports.catalog.database(action.service, action.env)
            if db is None:
                raise StepFailed(f"{action.env} no longer names a database server")
            engine = self.ports.adapters.require("databases")
            await adapter_call(engine.revoke_logins(db))
            await self.audit(
                context,
                "secret.database_rotated",
                {"database": db.database, "vault_role": db.vault_role},
            )
            return {"outcome": f"every login of {db.database} revoked"}

        return [Step("rotate", f"Revoke the logins of {action.database}", rotate)]


def executors_for(desk: SecretsDesk) -> Any:
    """The executor factory `registry.executors` takes."""

    def build(ports: Ports) -> list[Executor]:
        return [
            SetSecretExecutor(ports, desk),
            DeleteSecretExecutor(ports, desk),
            RollbackSecretExecutor(ports, desk),
            RotateDatabaseExecutor(ports, desk),
        ]

    return build
