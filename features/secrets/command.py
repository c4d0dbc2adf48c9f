"""`/platform secret set|list|delete|rollback`: a service's secrets, self-service.

`set` never takes a value in Slack: it answers with a single-use link to the bot's own
page (or, without a PUBLIC_URL, a modal, with a warning). A value typed after the key
is refused, not echoed, and the person is told to rotate it.
"""

from __future__ import annotations

from features.kit.commands import Arguments, Command, CommandContext
from features.kit.rights import Place, lookup_place, require_owner_or_admin
from features.secrets.actions import (
    DeleteSecret,
    RollbackSecret,
    RotateDatabaseLogins,
    check_key,
)
from features.secrets.desk import LINK_MINUTES, SecretsDesk
from kernel.blocks import actions, button, section
from kernel.errors import ChangeRefused, NotConfigured, UsageError, adapter_call
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape
from kernel.ports.systems import SecretStore

MODAL_BUTTON = "secrets.modal"
SUBCOMMANDS = ("set", "list", "delete", "rollback", "rotate")

PASTED = (
    ":warning: That looks like a secret value typed into Slack, so I refused it and did not "
    "store or repeat it. Slack has it now in this conversation's history: treat it as "
    "leaked and rotate it at its source. Then type `/platform secret set {service} {env} "
    "<KEY>` with no value, and I give you a private page to paste it into."
)


class SecretCommand(Command):
    """Set, list, delete or roll back a service's secrets (values never pass through Slack).

    `/platform secret set checkout prod DATABASE_URL` answers with a private, single-use
    link (10 minutes, for you only) to a page where you paste the value; the bot writes
    it to Vault, after approval where policy requires it (prod by default). Never type a
    value in Slack.
    `/platform secret list checkout prod` shows the keys, their version, who set them
    and when, never values.
    `/platform secret delete checkout prod DATABASE_URL [--purge]` deletes the current
    version (older ones stay), or with `--purge` every version for good.
    `/platform secret rollback checkout prod DATABASE_URL --to-version 3` makes version 3
    the current one again.
    `/platform secret rotate checkout prod database` revokes every database login Vault
    issued for the service (its pods' Vault Agents fetch new ones), after approval where
    policy requires it.
    """

    name = "secret"
    usage = (
        "set|list|delete|rollback <service> <env> [<KEY>] [--to-version N] [--purge] "
        "| rotate <service> <env> database"
    )

    def __init__(self, desk: SecretsDesk) -> None:
        self.desk = desk

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        verb = args.optional()
        if verb not in SUBCOMMANDS:
            shown = f" {code(verb[:20])} is not one of them." if verb else ""
            raise UsageError(
                f"Say what to do: `set`, `list`, `delete`, `rollback` or `rotate`.{shown}",
                usage=self.full_usage(),
            )
        if verb == "set":
            return await self.set(ctx, args)
        if verb == "list":
            return await self.list(ctx, args)
        if verb == "rotate":
            return await self.rotate(ctx, args)
        return await self.change(ctx, args, verb)

    async def rotate(self, ctx: CommandContext, args: Arguments) -> Reply:
        """`rotate <service> <env> database` (or `rotate database <service> <env>`)."""
        usage = "/platform secret rotate <service> <env> database"
        words = _positional(args)
        reason = args.option("reason")
        args.done()
        if "database" not in words or len(words) != 3:
            raise UsageError(
                "`secret rotate` rotates a service's database logins: "
                "`/platform secret rotate <service> <env> database`.",
                usage=usage,
            )
        words.remove("database")
        place = lookup_place(ctx, words[0], words[1])
        await require_owner_or_admin(ctx, place, verb=f"rotate its database logins in {place.env}")
        db = ctx.catalog.database(place.service, place.env)
        if db is None:
            raise UsageError(
                f"{place.where} has no database: `{escape(place.env)}` names no "
                "`database_server` in platform.yml."
            )
        action = RotateDatabaseLogins(
            service=place.service,
            env=place.env,
            team=place.team,
            database=db.database,
            vault_role=db.vault_role,
        )
        return await self._propose(ctx, action, reason=reason)

    async def _place(self, ctx: CommandContext, args: Arguments, *, verb: str) -> Place:
        place = lookup_place(ctx, args.next("service"), args.next("env"))
        await require_owner_or_admin(ctx, place, verb=f"{verb} its secrets in {place.env}")
        return place

    def _vault(self, ctx: CommandContext) -> SecretStore:
        try:
            return ctx.adapters.require("vault")
        except NotConfigured as exc:
            raise UsageError(f"{escape(str(exc))}.") from None

    async def set(self, ctx: CommandContext, args: Arguments) -> Reply:
        words = _positional(args)
        if len(words) > 3 or (len(words) == 3 and "=" in words[2]):
            service = escape(words[0][:40]) if words else "<service>"
            env = escape(words[1][:40]) if len(words) > 1 else "<env>"
            return Reply(text=PASTED.format(service=service, env=env))
        if len(words) < 3:
            missing = ("service", "env", "KEY")[len(words)]
            raise UsageError(
                f"Missing &lt;{missing}&gt;.", usage="/platform secret set <service> <env> <KEY>"
            )
        service, env, key = words
        check_key(key, usage="/platform secret set <service> <env> <KEY>")
        try:
            args.done()
        except UsageError:  # never echo what followed: it may be a value
            raise UsageError(
                "`secret set` takes `<service> <env> <KEY>` and nothing else.",
                usage="/platform secret set <service> <env> <KEY>",
            ) from None
        place = lookup_place(ctx, service, env)
        await require_owner_or_admin(ctx, place, verb=f"set its secrets in {env}")
        self._vault(ctx)
        token, link = await self.desk.issue(
            user=ctx.user, channel=ctx.channel, place=place, key=key
        )
        where = f"{code(key)} of {place.where}"
        if self.desk.public_url is not None:
            url = self.desk.url(token)
            text = (
                f"Set {where}: open <{url}|this private page> within {LINK_MINUTES} minutes "
                "(it works once, and only for this request). Paste the value there: it goes "
                "from your browser straight to the bot, which writes it to Vault at "
                f"{code(link.path)}. Slack never sees it."
            )
            return Reply(text=text, blocks=[section(text)])
        text = (
            f"Set {where}: this bot has no public address (`PUBLIC_URL` is not set), so it "
            "cannot give you a private page. You can type the value in a Slack modal instead, "
            ":warning: but then the value passes through Slack's servers (the bot itself "
            "never echoes or logs it). If that is not acceptable for this secret, ask the "
            "platform team to set `PUBLIC_URL`."
        )
        blocks = [
            section(text),
            actions(button(MODAL_BUTTON, "Type it in a Slack modal", value=link.id)),
        ]
        return Reply(text=text, blocks=blocks)

    async def list(self, ctx: CommandContext, args: Arguments) -> Reply:
        place = await self._place(ctx, args, verb="list")
        args.done()
        vault = self._vault(ctx)
        keys = await adapter_call(
            vault.list_keys(place.team, place.service, place.env),
            reading=f"the secrets of {place.where}",
        )
        if not keys:
            return Reply(
                text=f"No secrets for {place.where} yet. "
                f"`/platform secret set {place.service} {place.env} <KEY>` adds one."
            )
        lines = [f"Secrets of {place.where} (keys only, never values):"]
        for found in keys:
            who = f" by <@{escape(found.set_by)}>" if found.set_by else ""
            when = f" {found.updated_at:%Y-%m-%d %H:%M} UTC" if found.updated_at else ""
            state = " · *deleted*" if found.deleted else ""
            older = [v for v in found.versions if v != found.version]
            kept = f" · earlier: {', '.join(str(v) for v in older[-5:])}" if older else ""
            lines.append(
                f"• {code(found.key)} version {found.version}{state} · set{who}{when}{kept}"
            )
        return Reply(text="\n".join(lines))

    async def change(self, ctx: CommandContext, args: Arguments, verb: str) -> Reply:
        to_version = args.option("to-version")
        purge = args.flag("purge")
        reason = args.option("reason")
        place = await self._place(ctx, args, verb=verb)
        key = check_key(args.next("KEY"), usage=self.full_usage())
        args.done()
        vault = self._vault(ctx)
        found = await adapter_call(
            vault.read_key(place.team, place.service, place.env, key),
            reading=f"{code(key)} of {place.where}",
        )
        if found is None:
            raise UsageError(
                f"{place.where} has no secret {code(key)}; `/platform secret list "
                f"{place.service} {place.env}` shows the keys."
            )
        common = {"service": place.service, "env": place.env, "team": place.team, "key": key}
        if verb == "delete":
            if to_version is not None:
                raise UsageError("`--to-version` goes with `rollback`, not `delete`.")
            if found.deleted and not purge:
                raise UsageError(f"{code(key)}'s current version is deleted already.")
            action: DeleteSecret | RollbackSecret = DeleteSecret(
                **common, from_version=found.version, purge=purge
            )
        else:
            if purge:
                raise UsageError("`--purge` goes with `delete`, not `rollback`.")
            target = _version(to_version, self.full_usage())
            if target not in found.versions or (target == found.version and not found.deleted):
                have = ", ".join(str(v) for v in found.versions) or "none"
                raise UsageError(
                    f"{code(key)} cannot go back to version {target}: it is at version "
                    f"{found.version}; versions with a value: {have}."
                )
            action = RollbackSecret(**common, to_version=target, from_version=found.version)
        return await self._propose(ctx, action, reason=reason)

    async def _propose(
        self,
        ctx: CommandContext,
        action: DeleteSecret | RollbackSecret | RotateDatabaseLogins,
        *,
        reason: str | None,
    ) -> Reply:
        try:
            proposal = await ctx.changes.propose(
                action,
                requested_by=ctx.user,
                idempotency_key=f"secret:{ctx.request_key}",
                reply_channel=ctx.channel,
                reason=reason,
            )
        except ChangeRefused as exc:
            raise UsageError(exc.message) from None
        if proposal.approval_id is not None:
            return Reply(
                text=f"That waits for approval (rule `{escape(proposal.rule or 'policy')}`); "
                "the card is in the team's channel."
            )
        return Reply(text=f"On it: {escape(action.summary())}. Follow the progress message.")


def _positional(args: Arguments) -> list[str]:
    words = []
    while (word := args.optional()) is not None:
        words.append(word)
    return words


def _version(text: str | None, usage: str) -> int:
    if text is None:
        raise UsageError(
            "Say which version: `--to-version N` (`secret list` shows them).", usage=usage
        )
    if not text.isdigit() or len(text) > 9 or int(text) < 1:
        raise UsageError(f"{code(text[:20])} is not a version number.", usage=usage)
    return int(text)
