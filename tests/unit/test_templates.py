"""Golden-path templates: loading, parameters, rendering, the sandbox and `templates check`.

Broken templates are written into tmp_path one mistake each, the way a person would
make it, and every problem must name its file (and line) in words a person can act on.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from app.cli import main
from catalog.load import load_platform_model
from catalog.template_checks import check_templates, sample_context
from catalog.templates import (
    RenderContext,
    Template,
    TemplateError,
    load_template,
    load_templates,
    quote,
)
from tests.unit.fakes import REPO_ROOT

SHIPPED = REPO_ROOT / "templates"
HOSTILE = "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %} {{ ''.__class__.__mro__ }} ${HOME}"
"""A description typed by someone hoping the bot evaluates it."""

GOOD_SPEC = """\
name: tiny
title: A tiny template
description: For tests
parameters:
  - name: flavour
    type: enum
    enum: [vanilla, chocolate]
    default: vanilla
  - name: replicas
    type: integer
    min: 1
    max: 5
    default: 2
  - name: motto
    type: string
    pattern: ^[a-z ]+$
    example: keep it simple
  - name: public
    type: boolean
    default: false
steps: [gitlab, catalog]
"""
GOOD_CATALOG_INFO = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: {{ service }}
  description: {{ description | quote }}
  annotations:
    gitlab.com/project-slug: {{ gitlab_group }}/{{ service }}
    backstage.io/kubernetes-id: {{ service }}
    slack.com/bot-notify: {{ slack_channel | quote }}
    grafana/dashboard-selector: "tags @> '{{ service }}'"
spec:
  type: service
  owner: group:{{ team }}
"""


def write_template(
    root: Path, *, spec: str = GOOD_SPEC, files: dict[str, str] | None = None, name: str = "tiny"
) -> Path:
    """A template folder under `root` with the given template.yml and skeleton files."""
    folder = root / name
    (folder / "skeleton").mkdir(parents=True)
    (folder / "template.yml").write_text(spec, encoding="utf-8")
    skeleton = {
        "catalog-info.yaml": GOOD_CATALOG_INFO,
        "{{ service }}.txt": "{{ flavour }} x{{ replicas }} {{ motto }} {{ public }}\n",
    }
    for path, content in {**skeleton, **(files or {})}.items():
        (folder / "skeleton" / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / "skeleton" / path).write_text(content, encoding="utf-8")
    return folder


def context(template: Template, **changes: Any) -> RenderContext:
    """A good context for `template` (the tiny one unless `parameters` is given)."""
    if "parameters" not in changes:
        values, errors = template.parse_parameters({"motto": "hello there"})
        assert errors == {}
        changes["parameters"] = values
    fields: dict[str, Any] = {
        "service": "orders-api",
        "team": "payments",
        "description": "Takes orders",
        "environments": ("staging", "prod", "prod-eu"),
        "gitlab_group": "payments",
        "slack_channel": "#payments",
        "grafana_dashboard": "orders-api-overview",
        "registry": "registry.example.com/payments",
    }
    return RenderContext(**{**fields, **changes})


@pytest.fixture
def tiny(tmp_path: Path) -> Template:
    return load_template(write_template(tmp_path))


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(TemplateError) as caught:
        load_template(folder)
    return caught.value.problems


# -- the shipped templates ------------------------------------------------------------------


def test_the_shipped_templates_load_and_pass_their_check() -> None:
    templates = load_templates(SHIPPED)

    assert sorted(templates) == ["node-postgres", "python-fastapi"]
    assert templates["node-postgres"].title == "REST API: Node.js + Postgres + CI/CD"
    assert templates["python-fastapi"].title == "REST API: Python (FastAPI) + Postgres + CI/CD"
    assert check_templates(SHIPPED) == []


def test_the_sample_config_points_at_the_shipped_templates_from_any_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)

    model = load_platform_model(REPO_ROOT / "sandbox" / "app" / "sample" / "platform.yml")

    assert Path(model.templates_dir) == SHIPPED
    assert "node-postgres" in load_templates(model.templates_dir)


def test_templates_dir_is_resolved_against_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "platform.yml"
    config.write_text("templates_dir: ../golden\n", encoding="utf-8")

    assert load_platform_model(config).templates_dir == str(tmp_path / "golden")


@pytest.mark.parametrize(
    ("name", "version_parameter", "choices"),
    [("node-postgres", "node_version", [20, 22]), ("python-fastapi", "python_version", None)],
)
def test_a_shipped_skeleton_renders_what_the_golden_path_promises(
    name: str, version_parameter: str, choices: list[int] | None
) -> None:
    template = load_templates(SHIPPED)[name]
    values, errors = template.parse_parameters({"port": "9090"})
    assert errors == {}
    if choices is not None:
        assert template.parameter(version_parameter) is not None
        assert template.parse_parameters({version_parameter: "21"})[1] == {
            version_parameter: "must be one of 20, 22"
        }

    files = template.render(context(template, parameters=values))

    for path in ("Dockerfile", ".gitlab-ci.yml", "README.md", "catalog-info.yaml"):
        assert files[path].strip(), path
    deployment, service = (
        yaml.safe_load(files[f"k8s/{k}.yaml"]) for k in ("deployment", "service")
    )
    assert deployment["metadata"]["name"] == "orders-api"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/name"] == "orders-api"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "orders-api"
    [container] = pod["containers"]
    assert container["ports"][0]["containerPort"] == 9090
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "orders-api"}
    assert "USER 1000" in files["Dockerfile"]

    ci = yaml.safe_load(files[".gitlab-ci.yml"])
    assert ci["stages"] == ["test", "build", "deploy"]
    assert "$CI_REGISTRY_IMAGE:$CI_COMMIT_SHORT_SHA" in ci["variables"]["IMAGE"]
    assert 'docker push "$IMAGE"' in ci["build"]["script"]
    for env in ("staging", "prod", "prod-eu"):
        job = ci[f"deploy-{env}"]
        assert job["environment"]["name"] == env
        assert job["variables"]["NAMESPACE"] == f"orders-api-{env}"
        manual = [rule.get("when") for rule in job["rules"]] == ["manual"]
        assert manual == (env != "staging"), env
    assert any("set image" in line for line in ci[".deploy"]["script"])

    entity = yaml.safe_load(files["catalog-info.yaml"])
    assert entity["spec"]["owner"] == "group:payments"
    assert entity["metadata"]["annotations"]["gitlab.com/project-slug"] == "payments/orders-api"
    assert entity["metadata"]["annotations"]["slack.com/bot-notify"] == "#payments"


def test_an_environment_named_as_manual_waits_for_a_person(tiny: Template) -> None:
    tiny_ci = {"ci.txt": "{% for e in manual_environments %}{{ e }} {% endfor %}"}
    template = Template(
        name=tiny.name,
        title=tiny.title,
        description="",
        parameters=tiny.parameters,
        steps=tiny.steps,
        path=tiny.path,
        files=tiny_ci,
    )

    files = template.render(
        context(template, environments=("dev", "qa", "prod"), manual_environments=("qa",))
    )

    assert files["ci.txt"] == "qa prod "


# -- parameters -------------------------------------------------------------------------------


def test_parameters_are_typed_and_defaults_are_applied(tiny: Template) -> None:
    values, errors = tiny.parse_parameters(
        {"flavour": "chocolate", "replicas": " 3 ", "motto": "be kind", "public": "yes"}
    )

    assert errors == {}
    assert values == {"flavour": "chocolate", "replicas": 3, "motto": "be kind", "public": True}
    assert tiny.parse_parameters({"motto": "x", "replicas": ""})[0]["replicas"] == 2


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        ({"flavour": "strawberry"}, {"flavour": "must be one of vanilla, chocolate"}),
        ({"replicas": "two"}, {"replicas": "must be a whole number, like 8080"}),
        ({"replicas": "0"}, {"replicas": "must be at least 1"}),
        ({"replicas": "99"}, {"replicas": "must be at most 5"}),
        ({"motto": "Shout!"}, {"motto": "must match ^[a-z ]+$"}),
        ({"motto": "a" * 201}, {"motto": "must be at most 200 characters"}),
        ({"public": "maybe"}, {"public": "must be true or false"}),
        (
            {"flavor": "vanilla"},
            {"flavor": "is not a parameter of tiny; did you mean 'flavour'?"},
        ),
    ],
)
def test_a_bad_parameter_value_says_what_is_accepted(
    tiny: Template, raw: dict[str, str | None], errors: dict[str, str]
) -> None:
    values, found = tiny.parse_parameters({"motto": "ok", **raw})

    assert found == errors
    assert not set(errors) & set(values)


def test_a_required_parameter_without_default_must_be_given(tmp_path: Path) -> None:
    spec = GOOD_SPEC.replace(
        "    example: keep it simple\n", "    required: true\n    help: Say it\n"
    )
    template = load_template(write_template(tmp_path, spec=spec))

    assert template.parse_parameters({"motto": None})[1] == {"motto": "is required (Say it)"}
    assert template.parse_parameters({"motto": "  "})[1] == {"motto": "is required (Say it)"}


# -- what people type never runs --------------------------------------------------------------


def test_user_text_comes_out_literally_and_never_executes(tiny: Template) -> None:
    files = tiny.render(
        context(
            tiny,
            description=HOSTILE,
            parameters={**context(tiny).parameters, "motto": "{{ 7*7 }} {% if 1 %}x{% endif %}"},
        )
    )

    entity = yaml.safe_load(files["catalog-info.yaml"])
    assert entity["metadata"]["description"] == HOSTILE
    assert files["orders-api.txt"] == "vanilla x2 {{ 7*7 }} {% if 1 %}x{% endif %} False\n"
    assert "49" not in json.dumps(files)


@pytest.mark.parametrize("template_name", ["node-postgres", "python-fastapi"])
def test_a_hostile_description_keeps_every_shipped_file_intact(template_name: str) -> None:
    template = load_templates(SHIPPED)[template_name]

    files = template.render(sample_context(template, description=HOSTILE))

    assert HOSTILE in files["README.md"]
    assert yaml.safe_load(files["catalog-info.yaml"])["metadata"]["description"] == HOSTILE
    assert "49" not in files["README.md"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("service", "{{ 7*7 }}"),
        ("service", "../../etc"),
        ("service", "Orders"),
        ("team", "pay ments"),
        ("environments", ("prod\nkind: Secret",)),
        ("gitlab_group", "../x"),
        ("registry", "Registry.example.com"),
        ("slack_channel", "payments"),
        ("grafana_dashboard", "x' || true"),
    ],
)
def test_a_context_value_that_could_break_out_is_refused(
    tiny: Template, field: str, value: object
) -> None:
    with pytest.raises(TemplateError) as caught:
        tiny.render(context(tiny, **{field: value}))

    assert f"render context: {field}" in str(caught.value)


def test_parameters_not_parsed_by_the_template_are_refused(tiny: Template) -> None:
    with pytest.raises(TemplateError, match=r"use Template\.parse_parameters"):
        tiny.render(context(tiny, parameters={"flavour": "vanilla"}))


@given(st.text())
def test_quote_is_a_literal_in_yaml_json_and_python(text: str) -> None:
    quoted = quote(text)

    assert yaml.safe_load(f"key: {quoted}\n") == {"key": text}
    assert json.loads(quoted) == text
    assert ast.literal_eval(quoted) == text


# -- the sandbox and the skeleton's paths -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ ''.__class__.__mro__ }}", "refused by the sandbox"),
        ("{{ cycler.__init__.__globals__ }}", "refused by the sandbox"),
        ("{{ '{0.__class__}'.format(1) }}", "refused by the sandbox"),
        ("{% include '/etc/passwd' %}", "no loader"),
        ("{{ undefined_name }}", "'undefined_name' is undefined"),
    ],
)
def test_a_skeleton_cannot_escape_the_sandbox(tmp_path: Path, source: str, expected: str) -> None:
    template = load_template(write_template(tmp_path, files={"evil.txt": source}))

    with pytest.raises(TemplateError) as caught:
        template.render(context(template))

    assert "tiny/skeleton/evil.txt" in str(caught.value)
    assert expected in str(caught.value)
    assert "root:" not in str(caught.value)


def test_a_skeleton_path_that_renders_outside_the_repository_is_refused(tmp_path: Path) -> None:
    folder = write_template(tmp_path, files={"{{ '..%cescape.txt' % 47 }}": "x"})
    template = load_template(folder)

    with pytest.raises(TemplateError, match="leaves the skeleton"):
        template.render(context(template))


def test_a_symbolic_link_in_a_skeleton_is_refused(tmp_path: Path) -> None:
    folder = write_template(tmp_path)
    (folder / "skeleton" / "secrets.txt").symlink_to("/etc/hostname")

    assert problems_of(folder) == [
        f"{folder / 'skeleton' / 'secrets.txt'}: is a symbolic link; skeletons hold plain files "
        "only"
    ]


def test_a_binary_file_in_a_skeleton_is_refused(tmp_path: Path) -> None:
    folder = write_template(tmp_path)
    (folder / "skeleton" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")

    assert problems_of(folder) == [
        f"{folder / 'skeleton' / 'logo.png'}: is not UTF-8 text; binary files are not supported"
    ]


def test_a_jinja_syntax_error_in_a_skeleton_is_found_at_load(tmp_path: Path) -> None:
    folder = write_template(tmp_path, files={"app.js": "ok\nok\n{% for %}\n"})

    [problem] = problems_of(folder)

    assert problem.startswith(f"{folder / 'skeleton' / 'app.js'}: line 3: ")


# -- a broken template.yml --------------------------------------------------------------------


def spec_with(old: str, new: str) -> str:
    assert GOOD_SPEC.count(old) == 1, old
    return GOOD_SPEC.replace(old, new)


def line_of(text: str, needle: str) -> int:
    [line] = [i for i, row in enumerate(text.splitlines(), 1) if needle in row]
    return line


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        (
            "parameters:",
            "paramters:",
            "paramters:",
            "paramters: unknown key 'paramters'; did you mean 'parameters'?",
        ),
        (
            "    min: 1\n",
            "    minimum: 1\n",
            "minimum:",
            "parameters[1].minimum: unknown key 'minimum'; did you mean 'min'?",
        ),
        (
            "    type: boolean",
            "    type: bool",
            "type: bool",
            "parameters[3].type: 'bool' is not allowed; use one of 'string', 'integer', "
            "'boolean' or 'enum'",
        ),
        (
            "- name: motto",
            "- name: service",
            "- name: service",
            "parameters[2]: parameter name 'service' is reserved (every skeleton already has "
            "it); choose another name",
        ),
        (
            "    default: vanilla",
            "    default: mint",
            "- name: flavour",
            "parameters[0]: default 'mint' must be one of vanilla, chocolate",
        ),
        (
            "steps: [gitlab, catalog]",
            "steps: [gitlab, jenkins]",
            "steps:",
            "steps[1]: 'jenkins' is not allowed; use one of 'gitlab', 'kubernetes', 'vault', "
            "'postgres', 'catalog' or 'slack'",
        ),
        (
            "    pattern: ^[a-z ]+$",
            "    pattern: ^[a-z+$",
            "- name: motto",
            "parameters[2]: pattern is not a valid regular expression: unterminated character "
            "set at position 1",
        ),
    ],
)
def test_a_broken_template_yml_names_the_file_line_and_fix(
    tmp_path: Path, old: str, new: str, needle: str, message: str
) -> None:
    spec = spec_with(old, new)
    folder = write_template(tmp_path, spec=spec)

    assert problems_of(folder) == [
        f"{folder / 'template.yml'}: line {line_of(spec, needle)}: {message}"
    ]


def test_template_yml_that_is_not_yaml_says_where(tmp_path: Path) -> None:
    spec = spec_with("title: A tiny template", "title: [A tiny template")
    folder = write_template(tmp_path, spec=spec)

    [problem] = problems_of(folder)

    assert problem.startswith(f"{folder / 'template.yml'}: line ")
    assert "not valid YAML" in problem


def test_a_template_named_unlike_its_folder_is_refused(tmp_path: Path) -> None:
    folder = write_template(tmp_path, name="other")

    assert problems_of(folder) == [
        f"{folder / 'template.yml'}: name 'tiny' must be the folder's name, 'other'"
    ]


def test_load_templates_lists_every_broken_template_at_once(tmp_path: Path) -> None:
    write_template(tmp_path, spec=spec_with("title: A tiny template\n", ""))
    (tmp_path / "empty").mkdir()

    with pytest.raises(TemplateError) as caught:
        load_templates(tmp_path)

    assert caught.value.problems == [
        f"{tmp_path / 'empty' / 'template.yml'}: missing; every template folder needs one",
        f"{tmp_path / 'tiny' / 'template.yml'}: title: is required",
    ]


# -- templates check --------------------------------------------------------------------------


def test_check_finds_a_rendered_yaml_file_that_does_not_parse(tmp_path: Path) -> None:
    write_template(tmp_path, files={"k8s/app.yaml": "a: 1\n---\nb: [\n"})

    [problem] = check_templates(tmp_path)

    assert problem.startswith("tiny/skeleton/k8s/app.yaml: line ")
    assert "not valid YAML" in problem


def test_check_finds_user_text_left_unquoted(tmp_path: Path) -> None:
    write_template(tmp_path, files={"package.json": '{"description": "{{ description }}"}'})

    assert check_templates(tmp_path) == [
        "tiny/skeleton/package.json: line 1: rendered file is not valid JSON: Expecting ',' "
        "delimiter"
    ]


def test_check_wants_a_complete_catalog_entry(tmp_path: Path) -> None:
    catalog_info = GOOD_CATALOG_INFO.replace(
        "    slack.com/bot-notify: {{ slack_channel | quote }}\n", ""
    ).replace("owner: group:{{ team }}", "owner: somebody")
    write_template(tmp_path, files={"catalog-info.yaml": catalog_info})

    assert check_templates(tmp_path) == [
        "tiny/skeleton/catalog-info.yaml: spec.owner must be group:<team>",
        "tiny/skeleton/catalog-info.yaml: metadata.annotations lacks slack.com/bot-notify",
    ]


def test_check_needs_a_sample_for_every_parameter(tmp_path: Path) -> None:
    spec = spec_with("    example: keep it simple\n", "").replace("^[a-z ]+$", "^[0-9]+$")
    folder = write_template(tmp_path, spec=spec)

    assert check_templates(tmp_path) == [
        f"{folder / 'template.yml'}: parameter motto: give a default or an example, so the "
        "skeleton can be checked"
    ]


def test_the_cli_prints_each_template_and_fails_on_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_template(tmp_path, name="tiny")
    write_template(tmp_path, name="broken", spec=GOOD_SPEC.replace("name: tiny", "name: broken"))
    (tmp_path / "broken" / "skeleton" / "catalog-info.yaml").write_text("a: [\n")

    assert main(["templates", "check", "--dir", str(tmp_path)]) == 1

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "broken: 1 problem(s)"
    assert out[1].startswith("  broken/skeleton/catalog-info.yaml: line 2: rendered file is not")
    assert out[2:] == ["tiny: OK"]
    assert main(["templates", "check", "--dir", str(SHIPPED)]) == 0
    assert capsys.readouterr().out == "node-postgres: OK\npython-fastapi: OK\n"
