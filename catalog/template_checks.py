"""`platform-bot templates check`: every template rendered with sample values (including
hostile ones), every file checked: YAML parses, no unquoted user text, a Backstage
`catalog-info.yaml` that names the service, its owner and its channel.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from catalog.templates import (
    CATALOG_ANNOTATIONS,
    GRAFANA_ANNOTATIONS,
    RenderContext,
    Template,
    TemplateError,
    load_template,
    template_folders,
)

SAMPLE_DESCRIPTIONS = (
    "A sample service",
    "Quotes \" and ', a # hash, {{ braces }}, {% tags %}: and\na second line",
)
"""`templates check` renders with both: the second catches user text left unquoted."""


def sample_context(template: Template, *, description: str) -> RenderContext:
    """A render context with sample values, for checks and tests."""
    raw = {p.name: p.sample() for p in template.parameters}
    values, errors = template.parse_parameters(raw)
    if errors:
        raise TemplateError(
            [f"{template.name}: parameter {name}: {error}" for name, error in errors.items()]
        )
    return RenderContext(
        service="sample-service",
        team="sample-team",
        description=description,
        environments=("staging", "prod"),
        gitlab_group="sample-team",
        slack_channel="#sample-team",
        grafana_dashboard="sample-service-overview",
        registry="registry.example.com/sample-team",
        parameters=values,
    )


def check_templates(directory: Path) -> list[str]:
    """Every problem of every template under `directory`; empty means all are fine."""
    try:
        folders = template_folders(directory)
    except TemplateError as exc:
        return exc.problems
    problems = [p for folder in folders for p in check_template(folder)]
    if not folders:
        problems.append(f"{directory}: holds no templates")
    return problems


def check_template(folder: Path) -> list[str]:
    """One template's problems: schema, rendering with sample values, the rendered files."""
    try:
        template = load_template(folder)
        for parameter in template.parameters:
            if parameter.sample() is None:
                raise TemplateError(
                    [
                        f"{folder / 'template.yml'}: parameter {parameter.name}: give a default "
                        "or an example, so the skeleton can be checked"
                    ]
                )
        problems: list[str] = []
        for description in SAMPLE_DESCRIPTIONS:
            context = sample_context(template, description=description)
            files = template.render(context)
            for path, content in files.items():
                problems += _file_problems(f"{template.name}/skeleton/{path}", path, content)
            problems += _catalog_info_problems(template.name, context, files)
    except TemplateError as exc:
        return exc.problems
    return list(dict.fromkeys(problems))


def _file_problems(where: str, path: str, content: str) -> list[str]:
    """A rendered .yml/.yaml (every document), .json or .toml file that does not parse."""
    try:
        if path.endswith((".yml", ".yaml")):
            list(yaml.safe_load_all(content))
        elif path.endswith(".json"):
            json.loads(content)
        elif path.endswith(".toml"):
            tomllib.loads(content)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        return [f"{where}: {line}rendered file is not valid YAML: {reason}"]
    except json.JSONDecodeError as exc:
        return [f"{where}: line {exc.lineno}: rendered file is not valid JSON: {exc.msg}"]
    except tomllib.TOMLDecodeError as exc:
        return [f"{where}: rendered file is not valid TOML: {exc}"]
    return []


def _catalog_info_problems(name: str, context: RenderContext, files: dict[str, str]) -> list[str]:
    """catalog-info.yaml is a Backstage Component owned by the team, with our annotations."""
    where = f"{name}/skeleton/catalog-info.yaml"
    if "catalog-info.yaml" not in files:
        return [f"{where}: missing; every skeleton needs a Backstage catalog-info.yaml"]
    try:
        entity = yaml.safe_load(files["catalog-info.yaml"])
    except yaml.YAMLError:
        return []  # reported by _file_problems
    if not isinstance(entity, dict):
        return [f"{where}: must be one Backstage entity (a mapping)"]
    problems = []
    if entity.get("apiVersion") != "backstage.io/v1alpha1" or entity.get("kind") != "Component":
        problems.append(f"{where}: must be apiVersion backstage.io/v1alpha1, kind Component")
    metadata = _mapping(entity, "metadata")
    spec = _mapping(entity, "spec")
    if metadata.get("name") != context.service:
        problems.append(f"{where}: metadata.name must be the service's name")
    if metadata.get("description") != context.description:
        problems.append(f"{where}: metadata.description must be the description, quoted")
    if spec.get("owner") not in (context.team, f"group:{context.team}"):
        problems.append(f"{where}: spec.owner must be group:<team>")
    annotations = _mapping(metadata, "annotations")
    missing = [a for a in CATALOG_ANNOTATIONS if not annotations.get(a)]
    if not any(annotations.get(a) for a in GRAFANA_ANNOTATIONS):
        missing.append(" or ".join(GRAFANA_ANNOTATIONS))
    if missing:
        problems.append(f"{where}: metadata.annotations lacks {', '.join(missing)}")
    return problems


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}
