"""`/platform new-service`: opens the modal, or takes the request typed in one line."""

from __future__ import annotations

from features.kit.commands import Arguments, Command, CommandContext
from features.new_service.modal import (
    modal,
)
from features.new_service.request import (
    Request,
    check,
    load_templates,
    propose,
)
from kernel.errors import ChangeRefused, UsageError
from kernel.interactions import Reply
from kernel.mrkdwn import code, escape


class NewServiceCommand(Command):
    """Create a new service from a golden-path template: repository, namespaces, secrets.

    `/platform new-service` opens a form. Or type it all:
    `/platform new-service <template> <name> --team <team> [--env <env>[,<env>] ...]
    [--description "..."] [--param key=value ...]`. You get a GitLab project with the
    template's skeleton and CI/CD, a Kubernetes namespace, a Vault path and (where the
    template asks for it) a PostgreSQL database per chosen environment (all of them
    unless `--env` names some), and a catalog entry;
    progress is shown in one message. If it fails, Retry or Clean up.
    """

    name = "new-service"
    usage = (
        '[<template> <name> --team <team> [--env <env>,...] [--description "..."] '
        "[--param key=value ...]]"
    )

    async def run(self, ctx: CommandContext, args: Arguments) -> Reply:
        templates = load_templates(ctx.catalog)
        template = args.optional()
        if template is None:
            args.done()
            view = await modal(ctx, templates)
            await ctx.ports.modals.open(ctx.request_key, view)
            return Reply(text="Fill in the form that just opened to create the service.")
        name = args.next("name")
        team = args.option("team")
        if team is None:
            raise UsageError(
                "Say which team owns it: `--team &lt;team&gt;`.", usage=self.full_usage()
            )
        description = args.option("description") or ""
        chosen: list[str] = []
        while (envs := args.option("env")) is not None:
            chosen += [env.strip() for env in envs.split(",") if env.strip()]
        raw: dict[str, str] = {}
        while (pair := args.option("param")) is not None:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UsageError(
                    f"{code(pair)} is not `key=value`; write e.g. `--param port=8080`.",
                    usage=self.full_usage(),
                )
            raw[key] = value
        args.done()
        request = Request(
            template, name, team, description, raw, environments=tuple(chosen) or None
        )
        problems, action = await check(ctx, request, templates)
        if action is None:
            lines = [
                f"• *{escape(key.removeprefix('param:'))}*: {text}"
                for key, text in problems.items()
            ]
            raise UsageError("Nothing was created:\n" + "\n".join(lines), usage=self.full_usage())
        try:
            return await propose(ctx, action, idempotency_key=ctx.request_key, channel=ctx.channel)
        except ChangeRefused as refused:
            return Reply(text=refused.message)
