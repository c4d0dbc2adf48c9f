"""`/platform deploy <service> <env> <version>`: put a version of a service into one environment.

Planning, approval and execution live in `features.releases`, shared with rollback.
"""

from __future__ import annotations

from features.kit.commands import Arguments, Command, CommandContext
from features.releases.planning import plan_deploy, propose_release
from kernel.errors import UsageError
from kernel.interactions import Reply


class DeployCommand(Command):
    """Deploy a version (image tag or digest) of a service to an environment.

    `/platform deploy checkout staging 1.4.3` sets the image of checkout's Deployment(s)
    in staging to the same repository at tag `1.4.3`, records who asked in the
    change-cause, and shows the rollout live in this channel and the service's channel.
    On an Argo CD environment the version is the git revision to sync to. Risky
    environments wait for approval. Add `--reason "..."` to say why.
    """

    name = "deploy"
    usage = '<service> <env> <version> [--reason "..."]'

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        reason = args.option("reason")
        service = args.next("service")
        env = args.next("env")
        version = args.next("version")
        args.done()
        if reason is not None and not reason.strip():
            raise UsageError('`--reason` needs words, like `--reason "fixes the 500s"`.')
        try:
            action = await plan_deploy(ctx, service=service, env=env, version=version)
        except UsageError as exc:
            raise UsageError(exc.message, usage=DeployCommand.full_usage()) from None
        return await propose_release(ctx, action, reason=reason.strip() if reason else None)
