"""The new-service modal: the chosen template's fields only, validated next to each field
when submitted (the errors travel in the ack).

Templates and teams are lists that grow past a static select's 100 options, so both are
external selects whose options the bot serves as people type (`TemplateOptions`,
`TeamOptions`). Choosing a template (`dispatch_action`) sends a block_actions at once;
`TemplateChosen` then replaces the modal with one showing that template's fields
(views.update with the view's hash, so a stale update is refused), keeping what was
typed: same block and action ids, and the values Slack sent with the click.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from catalog import Catalog, membership_of
from catalog.templates import Parameter, Template
from features.kit.context import Button, Context, Form, Options
from features.new_service.request import (
    CALLBACK_ID,
    MAX_DESCRIPTION,
    MAX_NAME,
    Request,
    check,
    load_templates,
    propose,
)
from kernel.blocks import (
    SELECT_OPTIONS,
    choose_many,
    external_select,
    input_block,
    option,
    section,
    static_select,
    text_input,
)
from kernel.blocks import modal as modal_view
from kernel.errors import ChangeRefused
from kernel.interactions import Click, OpenModal, OptionsRequest, Reply, Submission

TEMPLATE_ACTION = "new_service.template"
TEAM_ACTION = "new_service.team"
OPTION_VALUE = 150


def _param_block_id(template: str, key: str) -> str:
    return f"param.{template}.{key}"


ENVIRONMENTS_ACTION = "newservice.environments"


def _environments_input(catalog: Catalog, chosen: Any) -> dict[str, Any]:
    """Which of the catalog's environments the service gets; all ticked at first."""
    names = list(catalog.model.environments)[:100]
    ticked = [e for e in chosen if e in names] if isinstance(chosen, list) else names
    described = {n: catalog.model.environments[n] for n in names}
    options = [
        option(f"{n} ({described[n].risk} risk)" if described[n].risk != "low" else n, n)
        for n in names
    ]
    return input_block(
        "environments",
        "Environments",
        choose_many(
            ENVIRONMENTS_ACTION,
            options,
            initial=[o for o in options if o["value"] in ticked],
        ),
        hint="A namespace, a Vault path and (if the template has one) a database in each.",
    )


async def modal(ctx: Context, templates: dict[str, Template]) -> dict[str, Any]:
    """The form as it opens: template, name, owner team (the person's first), description;
    with a single template, that one chosen and its fields shown."""
    # inside a trigger_id or view_submission window: ask Slack only if it can matter
    email = await ctx.directory.email_of(ctx.user) if ctx.catalog.lists_emails() else None
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    chosen = next(iter(templates)) if len(templates) == 1 else None
    return build(
        templates,
        chosen=chosen,
        values={"team": me.teams[0] if me.teams else None},
        private_metadata=json.dumps({"channel": ctx.channel}),
        catalog=ctx.catalog,
    )


def build(
    templates: dict[str, Template],
    *,
    chosen: str | None,
    values: dict[str, Any],
    private_metadata: str,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """The modal with `chosen`'s fields (none before a template is chosen), each input
    starting from `values` (block_id -> value, as Submission.values)."""
    template = templates.get(chosen or "")
    team = values.get("team")
    team_option = option(team, team) if isinstance(team, str) and _fits(team) else None
    blocks: list[dict[str, Any]] = [
        input_block(
            "template",
            "Template",
            external_select(
                TEMPLATE_ACTION,
                placeholder="Choose a golden path",
                initial=_template_option(template) if template else None,
            ),
            dispatch_action=True,
        ),
        input_block(
            "name",
            "Service name",
            text_input(
                "name",
                max_length=MAX_NAME,
                placeholder="invoice-api",
                initial_value=_text(values.get("name")),
            ),
            hint=f"Lowercase letters, digits and '-', at most {MAX_NAME} characters.",
        ),
        input_block(
            "team",
            "Owner team",
            external_select(
                TEAM_ACTION,
                placeholder="Choose a team",
                initial=team_option,
            ),
        ),
        input_block(
            "description",
            "Description",
            text_input(
                "description",
                multiline=True,
                max_length=MAX_DESCRIPTION,
                initial_value=_text(values.get("description")),
            ),
            optional=True,
        ),
    ]
    if catalog is not None and catalog.model.environments:
        blocks.append(_environments_input(catalog, values.get("environments")))
    if template is None:
        blocks.append(
            section("Choose a template to see what it asks for.", block_id="choose_template")
        )
    else:
        for parameter in template.parameters[: 100 - len(blocks)]:
            value = values.get(_param_block_id(template.name, parameter.name))
            blocks.append(_parameter_input(template, parameter, value))
    return modal_view(
        CALLBACK_ID,
        "New service",
        blocks,
        submit="Create",
        private_metadata=private_metadata,
    )


def _parameter_input(template: Template, parameter: Parameter, value: Any) -> dict[str, Any]:
    current = _text(value) or (None if parameter.default is None else str(parameter.default))
    choices = [str(v) for v in parameter.enum or ()]
    element: dict[str, Any]
    if choices and len(choices) <= SELECT_OPTIONS and all(_fits(c) for c in choices):
        initial = option(current, current) if current in choices else None
        element = static_select("value", [option(c, c) for c in choices], initial=initial)
    else:  # free text (or an enum too long for a menu: checked on submit all the same)
        element = text_input("value", initial_value=current)
    hint = parameter.help or (f"One of: {', '.join(choices)}" if choices else None)
    return input_block(
        _param_block_id(template.name, parameter.name),
        parameter.title or parameter.name,
        element,
        optional=True,
        hint=hint,
    )


def _template_option(template: Template) -> dict[str, Any]:
    return option(template.title or template.name, template.name)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _fits(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= OPTION_VALUE


def matching(query: str, names: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, value) pairs whose label or value contains `query` (any case): those that
    start with it first, then the rest, each alphabetically; at most 100."""
    wanted = query.strip().lower()
    hits = [
        (label, value)
        for label, value in names
        if _fits(value) and (wanted in label.lower() or wanted in value.lower())
    ]
    hits.sort(key=lambda pair: (not pair[1].lower().startswith(wanted), pair[1]))
    return hits[:SELECT_OPTIONS]


class TemplateOptions(Options):
    """The template menu: golden paths whose name or title contains what was typed."""

    action_id = TEMPLATE_ACTION

    async def options(self, ctx: Context, request: OptionsRequest) -> list[dict[str, Any]]:
        templates = load_templates(ctx.catalog)
        pairs = ((t.title or name, name) for name, t in templates.items())
        return [option(label, value) for label, value in matching(request.query, pairs)]


class TeamOptions(Options):
    """The owner-team menu: catalog teams whose name contains what was typed."""

    action_id = TEAM_ACTION

    async def options(self, ctx: Context, request: OptionsRequest) -> list[dict[str, Any]]:
        pairs = ((name, name) for name in ctx.catalog.team_names())
        return [option(label, value) for label, value in matching(request.query, pairs)]


class TemplateChosen(Button):
    """A template was chosen in the modal: show its fields (and only its fields)."""

    action_id = TEMPLATE_ACTION

    async def click(self, ctx: Context, click: Click) -> Reply | None:
        opened: OpenModal | None = click.modal
        if opened is None:
            return None
        templates = load_templates(ctx.catalog)
        values = dict(opened.values)
        if not values.get("team"):  # not chosen yet: keep offering the person's own team
            # inside a trigger_id or view_submission window: ask Slack only if it can matter
            email = await ctx.directory.email_of(ctx.user) if ctx.catalog.lists_emails() else None
            me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
            values["team"] = me.teams[0] if me.teams else None
        view = build(
            templates,
            chosen=click.value if click.value in templates else None,
            values=values,
            private_metadata=opened.private_metadata,
            catalog=ctx.catalog,
        )
        await ctx.ports.modals.update(opened.id, view, hash=opened.hash or None)
        return None


class NewServiceForm(Form):
    """The new-service modal: check every field, then propose the Run."""

    callback_id = CALLBACK_ID

    async def submit(self, ctx: Context, submission: Submission) -> dict[str, str] | None:
        values = submission.values
        template = str(values.get("template") or "")
        prefix = f"param.{template}."
        request = Request(
            template=template,
            name=str(values.get("name") or "").strip(),
            team=str(values.get("team") or ""),
            description=str(values.get("description") or ""),
            parameters={
                block_id.removeprefix(prefix): str(value)
                for block_id, value in values.items()
                if block_id.startswith(prefix) and value not in (None, "")
            },
            environments=_chosen(values.get("environments", None)),
        )
        templates = load_templates(ctx.catalog)
        problems, action = await check(ctx, request, templates)
        if action is None:
            return {_block_id(template, key): _plain_text(text) for key, text in problems.items()}
        channel = _reply_channel(submission.private_metadata) or ctx.user
        try:
            await propose(
                ctx, action, idempotency_key=f"view:{submission.view_id}", channel=channel
            )
        except ChangeRefused as refused:  # e.g. the same name is being created right now
            return {"name": _plain_text(refused.message)}
        return None


def _chosen(value: Any) -> tuple[str, ...] | None:
    """The ticked environments (None: the form had no such field, so all)."""
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(str(v) for v in value if v)
    return (str(value),)


def _block_id(template: str, key: str) -> str:
    if key.startswith("param:"):
        return _param_block_id(template, key.removeprefix("param:"))
    return key


def _plain_text(mrkdwn: str) -> str:
    """Form errors are plain text: drop mrkdwn's backticks and entities."""
    text = mrkdwn.replace("`", "'").replace("*", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")[:150]


def _reply_channel(private_metadata: str) -> str | None:
    try:
        channel = json.loads(private_metadata or "{}").get("channel")
    except (ValueError, AttributeError):
        return None
    return str(channel) if channel else None
