"""`/platform history <service> <env>`: the revisions a rollback can go back to.

Kubernetes keeps a Deployment's history in its ReplicaSets (revision, pod template,
change-cause); Argo CD keeps an Application's history of synced git revisions. Our own
change-causes (`deploy 1.4.2 by U01ALICE (run …)`) and the audit log add who asked and
who approved. The environment's backend reads them (features.releases.backends).
"""

from __future__ import annotations

from features.kit.commands import Arguments, Command, CommandContext
from features.releases.backends import backend_for
from features.releases.targets import lookup_target
from kernel.errors import UsageError
from kernel.ids import ServiceName
from kernel.interactions import Reply
from kernel.mrkdwn import truncate


class History(Command):
    """Show the revisions of a service in an environment: image, when, why and who.

    `/platform history checkout prod` lists them newest first, the running one marked,
    with the change-cause, and who asked and approved when it went through the bot.
    Roll back to one of them with `/platform rollback checkout prod 7`.
    """

    name = "history"
    usage = "<service> <env>"

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        service = args.next("service")
        env = args.next("env")
        args.done()
        try:
            target = lookup_target(ctx, service, env)
            audit = await ctx.audit.recent(service=ServiceName(service), limit=200)
            lines = await backend_for(ctx.ports, target.backend).history(target, audit)
        except UsageError as exc:
            raise UsageError(exc.message, usage=History.full_usage()) from None
        return Reply(text=truncate("\n".join(lines), 3000))
