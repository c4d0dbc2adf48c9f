"""Golden-path templates: a folder with `template.yml` and a `skeleton/` to render.

A template is what `/platform new-service` turns into a repository: `template.yml` says
its name, what it asks for (typed parameters with patterns, enums and defaults) and
which provisioning steps it needs; `skeleton/` holds the files, rendered with a
sandboxed Jinja2 environment. What people type (a service name, a description, a
parameter) is only ever passed in as a variable, never compiled as template source, so
`{{ 7*7 }}` in a description comes out as those eight characters. The templates
themselves are code reviewed by the platform team, and still rendered in Jinja's
sandbox, which refuses `__class__`-style escapes. `check_templates` is what
`platform-bot templates check` runs in CI. docs/templates.md is the guide.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from catalog.load import did_you_mean
from catalog.model import NAME_PATTERN, SLACK_CHANNEL_PATTERN

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

# Jinja is imported the first time a template is parsed or rendered (new-service,
# check-config, templates check), not when the bot starts (issue 18: start-up, memory).

Step = Literal["gitlab", "kubernetes", "vault", "postgres", "catalog", "slack"]
STEPS: tuple[Step, ...] = ("gitlab", "kubernetes", "vault", "catalog", "slack")
"""The steps a template gets when it lists none, in the order a Run performs them;
`postgres` (after `vault`) is asked for by name."""

RESERVED = frozenset(
    {
        "service",
        "team",
        "description",
        "environments",
        "gitlab_group",
        "slack_channel",
        "grafana_dashboard",
        "registry",
        "parameters",
        "manual_environments",
        # Jinja's own globals and names, which a parameter would shadow
        "range",
        "dict",
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
        "loop",
        "self",
        "true",
        "false",
        "none",
    }
)
"""Variable names every skeleton sees; a parameter may not take one of them."""

MAX_STRING = 200
"""Longest value a string parameter accepts, in characters."""

CATALOG_ANNOTATIONS = (
    "backstage.io/kubernetes-id",
    "gitlab.com/project-slug",
    "slack.com/bot-notify",
)
"""Annotations every rendered catalog-info.yaml must carry (plus a Grafana one)."""

GRAFANA_ANNOTATIONS = ("grafana/dashboard-selector", "grafana/overview-dashboard")

_PARAMETER_NAME = r"^[a-z][a-z0-9_]{0,39}$"
_GITLAB_GROUP = r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$"
_REGISTRY = r"^[a-z0-9][a-z0-9.:-]*(/[a-z0-9][a-z0-9._-]*)*$"
_DASHBOARD = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class TemplateError(Exception):
    """A template cannot be loaded or rendered; each problem names its file (and line)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# -- template.yml --------------------------------------------------------------------------


class Parameter(BaseModel):
    """One thing a template asks for, with its type and the values it accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_PARAMETER_NAME)
    title: str = ""
    """A label for people ("Node.js version"); default: the name."""
    type: Literal["string", "integer", "boolean", "enum"]
    help: str = ""
    default: str | int | bool | None = None
    example: str | int | None = None
    """A valid value `templates check` renders with when there is no default."""
    pattern: str | None = None
    enum: tuple[str | int, ...] | None = None
    required: bool = False
    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        if self.name in RESERVED:
            raise ValueError(
                f"parameter name '{self.name}' is reserved (every skeleton already has it); "
                "choose another name"
            )
        if self.pattern is not None:
            if self.type != "string":
                raise ValueError("'pattern' is only for type string")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if (self.enum is not None) != (self.type == "enum"):
            raise ValueError("type enum needs 'enum: [...]', and 'enum' needs type enum")
        if self.enum is not None and not self.enum:
            raise ValueError("'enum' must list at least one value")
        if (self.min is not None or self.max is not None) and self.type != "integer":
            raise ValueError("'min' and 'max' are only for type integer")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is greater than 'max'")
        for what, value in (("default", self.default), ("example", self.example)):
            if value is not None:
                try:
                    self.parse(as_text(value))
                except ValueError as exc:
                    raise ValueError(f"{what} {value!r} {exc}") from None
        return self

    def parse(self, text: str) -> str | int | bool:
        """The typed value of what someone typed; ValueError says what is accepted."""
        text = text.strip()
        if self.type == "integer":
            if not re.fullmatch(r"[+-]?\d{1,18}", text):
                raise ValueError("must be a whole number, like 8080")
            number = int(text)
            if self.min is not None and number < self.min:
                raise ValueError(f"must be at least {self.min}")
            if self.max is not None and number > self.max:
                raise ValueError(f"must be at most {self.max}")
            return number
        if self.type == "boolean":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError("must be true or false")
        if self.type == "enum":
            assert self.enum is not None
            for choice in self.enum:
                if as_text(choice) == text:
                    return choice
            raise ValueError(f"must be one of {', '.join(as_text(c) for c in self.enum)}")
        if len(text) > MAX_STRING:
            raise ValueError(f"must be at most {MAX_STRING} characters")
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise ValueError(f"must match {self.pattern}")
        return text

    def sample(self) -> str | None:
        """A valid value to render the skeleton with in `templates check`, if one is known."""
        if self.default is not None:
            return as_text(self.default)
        if self.example is not None:
            return as_text(self.example)
        if self.enum:
            return as_text(self.enum[0])
        if self.type == "integer":
            low = self.min if self.min is not None else 1
            return str(low if self.max is None else min(low, self.max))
        if self.type == "boolean":
            return "false"
        if self.pattern is None or re.fullmatch(self.pattern, "example"):
            return "example"
        return None


class _TemplateFile(BaseModel):
    """The schema of template.yml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    title: str = Field(min_length=1, max_length=75)
    description: str = ""
    parameters: list[Parameter] = Field(default_factory=list)
    steps: tuple[Step, ...] = STEPS

    @model_validator(mode="after")
    def _unique(self) -> _TemplateFile:
        names = [p.name for p in self.parameters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"parameter {', '.join(twice)} is defined more than once")
        if len(set(self.steps)) != len(self.steps):
            raise ValueError("a step is listed more than once")
        return self


# -- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderContext:
    """Everything a skeleton may use. `parameters` are the typed values from
    `Template.parse_parameters`; they are also visible by their own names."""

    service: str
    team: str
    description: str
    environments: tuple[str, ...]
    gitlab_group: str
    slack_channel: str
    grafana_dashboard: str
    registry: str
    """Image repository prefix: the service's image is `<registry>/<service>`."""
    parameters: dict[str, Any]
    manual_environments: tuple[str, ...] = ()
    """Environments whose deploy waits for a person (e.g. risk high). Names that look
    like production (`prod`, `prod-eu`, `production`) are manual anyway."""


_YAML_UNSAFE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029]"
)


def quote(value: object) -> str:
    """A double-quoted string literal valid in YAML, JSON, TOML, JavaScript and Python.

    Skeletons put user text through it (`description: {{ description | quote }}`), so a
    quote, a newline or a `#` in a description can never change the file's structure.
    """
    text = json.dumps(str(value), ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


@cache
def _sandbox() -> SandboxedEnvironment:
    """Jinja's sandbox with no loader: `{% include %}`, `{% import %}` and `{% extends %}`
    cannot reach the filesystem, and an undefined name is an error, not an empty string.
    One, made on first use."""
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["quote"] = quote
    return env


def looks_like_production(env: str) -> bool:
    """`prod`, `prod-eu`, `eu-prod`, `production`: deploys there wait for a person."""
    return any(part in ("prod", "production", "prd") for part in env.split("-"))


@dataclass(frozen=True)
class Template:
    """A loaded template: its description, parameters, steps and skeleton sources."""

    name: str
    title: str
    description: str
    parameters: list[Parameter]
    steps: tuple[str, ...]
    path: Path
    files: Mapping[str, str] = field(repr=False, default_factory=dict)
    """Skeleton path (may contain `{{ service }}`) -> source, read once at load."""

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def parse_parameters(self, raw: dict[str, str | None]) -> tuple[dict[str, Any], dict[str, str]]:
        """Typed values (defaults applied) and, by parameter name, what is wrong.

        An empty or missing value takes the default; a required one without a default
        is an error. Unknown names are errors too, with a did-you-mean.
        """
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        known = [p.name for p in self.parameters]
        for name in raw:
            if name not in known:
                errors[name] = f"is not a parameter of {self.name}{did_you_mean(name, known)}"
        for parameter in self.parameters:
            text = raw.get(parameter.name)
            if text is None or not text.strip():
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                elif parameter.required:
                    errors[parameter.name] = "is required" + (
                        f" ({parameter.help})" if parameter.help else ""
                    )
                else:
                    values[parameter.name] = None
                continue
            try:
                values[parameter.name] = parameter.parse(text)
            except ValueError as exc:
                errors[parameter.name] = str(exc)
        return values, errors

    def render(self, context: RenderContext) -> dict[str, str]:
        """Every skeleton file rendered: repository path -> content.

        Raises TemplateError when the context is not valid (a bad service name, say) or
        a file fails to render (an undefined variable, something the sandbox refuses).
        """
        problems = _context_problems(context, [p.name for p in self.parameters])
        if problems:
            raise TemplateError(problems)
        variables = _variables(context)
        rendered: dict[str, str] = {}
        for source_path, source in self.files.items():
            where = f"{self.name}/skeleton/{source_path}"
            path = _render_one(where + " (its path)", source_path, variables)
            bad = _bad_path(path)
            if bad:
                raise TemplateError([f"{where}: renders to the path {path!r}, which {bad}"])
            if path in rendered:
                raise TemplateError([f"{where}: renders to {path!r}, like another file"])
            rendered[path] = _render_one(where, source, variables)
        return rendered


def _variables(context: RenderContext) -> dict[str, Any]:
    manual = tuple(
        env
        for env in context.environments
        if env in context.manual_environments or looks_like_production(env)
    )
    return {
        **context.parameters,
        "service": context.service,
        "team": context.team,
        "description": context.description,
        "environments": list(context.environments),
        "gitlab_group": context.gitlab_group,
        "slack_channel": context.slack_channel,
        "grafana_dashboard": context.grafana_dashboard,
        "registry": context.registry,
        "parameters": dict(context.parameters),
        "manual_environments": list(manual),
    }


def _context_problems(context: RenderContext, parameter_names: list[str]) -> list[str]:
    """Names that end up in paths, YAML keys and shell commands must have a safe shape."""
    checks = [
        ("service", context.service, NAME_PATTERN, "a DNS label such as 'orders-api'"),
        ("team", context.team, NAME_PATTERN, "a team name such as 'payments'"),
        ("gitlab_group", context.gitlab_group, _GITLAB_GROUP, "a GitLab group path"),
        ("slack_channel", context.slack_channel, SLACK_CHANNEL_PATTERN, "'#name' or an id"),
        ("grafana_dashboard", context.grafana_dashboard, _DASHBOARD, "a dashboard uid"),
        ("registry", context.registry, _REGISTRY, "an image repository prefix"),
    ]
    checks += [
        ("environments", env, NAME_PATTERN, "an environment name") for env in context.environments
    ]
    problems = [
        f"render context: {key} {value!r} is not {what}"
        for key, value, pattern, what in checks
        if not re.fullmatch(pattern, value)
    ]
    if not context.environments:
        problems.append("render context: environments is empty; name at least one")
    if sorted(context.parameters) != sorted(parameter_names):
        problems.append(
            f"render context: parameters {sorted(context.parameters)} are not the template's "
            f"{sorted(parameter_names)}; use Template.parse_parameters"
        )
    return problems


def _render_one(where: str, source: str, variables: dict[str, Any]) -> str:
    import jinja2

    try:
        return _sandbox().from_string(source).render(variables)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError([f"{where}: line {exc.lineno}: {exc.message}"]) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError([f"{where}: refused by the sandbox: {exc}"]) from None
    except jinja2.TemplateError as exc:
        raise TemplateError([f"{where}: {exc.message or type(exc).__name__}"]) from None
    except Exception as exc:  # a template's own bug: 1/0, an include (there is no loader)
        raise TemplateError([f"{where}: failed to render: {type(exc).__name__}: {exc}"]) from None


def _bad_path(path: str) -> str | None:
    """Why a rendered path may not be written into a repository, or None if it may."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return "is empty, absolute or contains a backslash or NUL"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "leaves the skeleton or has an empty part"
    if PurePosixPath(path).parts[0] == ".git":
        return "writes into .git"
    return None


# -- loading --------------------------------------------------------------------------------


def load_templates(directory: Path | str) -> dict[str, Template]:
    """Every template under `directory` (one folder each), by name.

    Raises TemplateError listing every problem of every template, each with its file
    and line, so one fix-and-retry round is enough.
    """
    templates: dict[str, Template] = {}
    problems: list[str] = []
    for folder in template_folders(Path(directory)):
        try:
            template = load_template(folder)
        except TemplateError as exc:
            problems += exc.problems
            continue
        templates[template.name] = template
    if problems:
        raise TemplateError(problems)
    return templates


def template_folders(directory: Path) -> list[Path]:
    """The folders of `directory` that are templates (hidden ones are skipped)."""
    if not directory.is_dir():
        raise TemplateError([f"{directory}: templates directory not found"])
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_template(folder: Path) -> Template:
    """One template folder: template.yml validated, every skeleton file read and parsed."""
    spec_path = folder / "template.yml"
    try:
        text = spec_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError([f"{spec_path}: missing; every template folder needs one"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError([f"{spec_path}: cannot be read as UTF-8 text ({exc})"]) from None
    spec = _parse_spec(text, str(spec_path))
    problems: list[str] = []
    if spec.name != folder.name:
        problems.append(
            f"{spec_path}: name '{spec.name}' must be the folder's name, '{folder.name}'"
        )
    files, file_problems = _read_skeleton(folder / "skeleton")
    problems += file_problems
    if problems:
        raise TemplateError(problems)
    return Template(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        parameters=list(spec.parameters),
        steps=tuple(spec.steps),
        path=folder.resolve(),
        files=files,
    )


def _parse_spec(text: str, source: str) -> _TemplateFile:
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise TemplateError([f"{source}: {where}not valid YAML: {reason}"]) from None
    if not isinstance(data, dict):
        raise TemplateError([f"{source}: line 1: must be a mapping (name:, title:, ...)"])
    try:
        return _TemplateFile.model_validate(data)
    except ValidationError as exc:
        problems = [_schema_problem(source, error, root) for error in exc.errors()]
        raise TemplateError(problems) from None


def _schema_problem(source: str, error: Any, root: yaml.Node | None) -> str:
    loc = tuple(error["loc"])
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        known = Parameter.model_fields if "parameters" in loc else _TemplateFile.model_fields
        message = f"unknown key '{key}'{did_you_mean(key, known)}"
    elif error["type"] == "missing":
        message = "is required"
    elif error["type"] == "literal_error":
        message = f"'{error.get('input')}' is not allowed; use one of {error['ctx']['expected']}"
    elif error["type"] == "string_pattern_mismatch" and loc == ("name",):
        message = "must be lowercase letters, digits and '-', starting with a letter"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
    line = _line_of(root, loc)
    where = f"line {line}: " if line else ""
    return f"{source}: {where}{path + ': ' if path else ''}{message}"


def _line_of(root: yaml.Node | None, loc: Iterable[Any]) -> int | None:
    """The line of the YAML node `loc` points at, or of its nearest parent."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _read_skeleton(skeleton: Path) -> tuple[dict[str, str], list[str]]:
    """Skeleton path -> source, refusing links, binary files and Jinja syntax errors."""
    import jinja2

    if not skeleton.is_dir() or skeleton.is_symlink():
        return {}, [f"{skeleton}: missing; a template's files live in skeleton/"]
    files: dict[str, str] = {}
    problems: list[str] = []
    for path in sorted(skeleton.rglob("*")):
        relative = path.relative_to(skeleton).as_posix()
        if path.is_symlink():
            problems.append(f"{path}: is a symbolic link; skeletons hold plain files only")
            continue
        if path.is_dir():
            continue
        bad = _bad_path(relative)
        if bad:
            problems.append(f"{path}: its path {bad}")
            continue
        try:
            source = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{path}: is not UTF-8 text; binary files are not supported")
            continue
        for text, what in ((relative, " (its path)"), (source, "")):
            try:
                _sandbox().parse(text)
            except jinja2.TemplateSyntaxError as exc:
                problems.append(f"{path}{what}: line {exc.lineno}: {exc.message}")
        files[relative] = source
    if not files and not problems:
        problems.append(f"{skeleton}: is empty")
    return files, problems


# -- checking ---------------------------------------------------------------------------------


def as_text(value: str | int | bool) -> str:
    """How a value is typed in Slack: booleans as true/false, numbers as digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
