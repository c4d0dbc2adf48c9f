"""`/platform rollback <service> <env> [<revision>]`: put an earlier revision back.

The same `start_rollback` serves this command and the Rollback button on alerts.
"""

from __future__ import annotations

from features.kit.commands import Arguments, Command, CommandContext
from features.releases.planning import start_rollback
from features.releases.targets import parse_revision
from kernel.errors import UsageError
from kernel.interactions import Reply


class RollbackCommand(Command):
    """Roll a service back to its previous revision, or to the one given.

    `/platform rollback checkout prod` puts back the revision before the running one;
    `/platform rollback checkout prod 7` puts back revision 7 (`/platform history
    checkout prod` lists them). On Kubernetes this is `kubectl rollout undo`; on Argo CD
    it uses the Application's history (if auto-sync is on you are offered to turn it
    off first). Add `--reason "..."`; `--break-glass` skips approval where the policy
    allows it, and is announced.
    """

    name = "rollback"
    usage = '<service> <env> [<revision>] [--reason "..."] [--break-glass]'

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        reason = args.option("reason")
        break_glass = args.flag("break-glass")
        service = args.next("service")
        env = args.next("env")
        typed = args.optional()
        args.done()
        revision = parse_revision(typed, usage=self.full_usage()) if typed is not None else None
        if reason is not None and not reason.strip():
            raise UsageError('`--reason` needs words, like `--reason "errors since 1.4.2"`.')
        return await start_rollback(
            ctx,
            service=service,
            env=env,
            to_revision=revision,
            reason=reason.strip() if reason else None,
            break_glass=break_glass,
        )
