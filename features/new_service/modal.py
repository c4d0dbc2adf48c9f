"""The new-service modal: the template's fields, validated next to each field when
submitted (the errors travel in the ack).
"""

from __future__ import annotations

import json
from typing import Any

from catalog import membership_of
from catalog.templates import Parameter, Template
from features.kit.context import Context, Form
from features.new_service.request import (
    CALLBACK_ID,
    MAX_DESCRIPTION,
    MAX_NAME,
    Request,
    check,
    load_templates,
    propose,
)
from kernel.errors import ChangeRefused
from kernel.interactions import Submission


def _param_block_id(template: str, key: str) -> str:
    return f"param.{template}.{key}"


async def modal(ctx: Context, templates: dict[str, Template]) -> dict[str, Any]:
    """The form: template, name, team, description, and every template's parameters
    (optional in Slack; the chosen template's are checked on submit)."""
    email = await ctx.directory.email_of(ctx.user)
    me = await membership_of(ctx.catalog, ctx.directory, ctx.user, email=email)
    teams = ctx.catalog.team_names()
    team_options = [_option(t, t) for t in teams]
    team_select: dict[str, Any] = {
        "type": "static_select",
        "action_id": "team",
        "placeholder": _plain("Choose a team"),
        "options": team_options,
    }
    if me.teams:
        team_select["initial_option"] = _option(me.teams[0], me.teams[0])
    blocks: list[dict[str, Any]] = [
        _input(
            "template",
            "Template",
            {
                "type": "static_select",
                "action_id": "template",
                "placeholder": _plain("Choose a golden path"),
                "options": [_option(t.title[:75], name) for name, t in sorted(templates.items())],
            },
        ),
        _input(
            "name",
            "Service name",
            {
                "type": "plain_text_input",
                "action_id": "name",
                "max_length": MAX_NAME,
                "placeholder": _plain("invoice-api"),
            },
            hint="Lowercase letters, digits and '-', at most 40 characters.",
        ),
        _input("team", "Owner team", team_select),
        _input(
            "description",
            "Description",
            {
                "type": "plain_text_input",
                "action_id": "description",
                "multiline": True,
                "max_length": MAX_DESCRIPTION,
            },
            optional=True,
        ),
    ]
    for name, template in sorted(templates.items()):
        for parameter in template.parameters:
            blocks.append(_parameter_input(name, template, parameter))
    return {
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": _plain("New service"),
        "submit": _plain("Create"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"channel": ctx.channel}),
        "blocks": blocks[:100],
    }


def _parameter_input(
    template_name: str, template: Template, parameter: Parameter
) -> dict[str, Any]:
    label = f"{parameter.title or parameter.name} ({template.title})"
    default = None if parameter.default is None else str(parameter.default)
    element: dict[str, Any]
    if parameter.enum:
        element = {
            "type": "static_select",
            "action_id": "value",
            "options": [_option(str(v), str(v)) for v in parameter.enum],
        }
        if default is not None:
            element["initial_option"] = _option(default, default)
    else:
        element = {"type": "plain_text_input", "action_id": "value"}
        if default is not None:
            element["initial_value"] = default
    return _input(
        _param_block_id(template_name, parameter.name),
        label,
        element,
        optional=True,
        hint=parameter.help or None,
    )


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": _plain(text[:75]), "value": value[:150]}


def _input(
    block_id: str,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool = False,
    hint: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label[:2000]),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = _plain(hint[:2000])
    return block


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
