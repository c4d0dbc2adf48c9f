"""Reading platform.yml and saying precisely what is wrong with it.

Every problem names its YAML path and line ("services.checkout.owner: team
'paymnts' is not defined; did you mean 'payments'?"), so `platform-bot
check-config` is useful in CI before a bad catalog reaches production.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from catalog.model import NAME_PATTERN, PlatformModel


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the config, with where it is."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}" if self.path else f"{where}{self.message}"


class ConfigError(Exception):
    """The platform config cannot be used; `problems` says why, each with its path."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" when something close exists, else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice, which YAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"'{key}' is defined twice (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_platform_model(path: Path) -> PlatformModel:
    """Read and validate platform.yml; raise ConfigError listing every problem.

    `templates_dir` comes back absolute, resolved against the file's own folder.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            str(path),
            [Problem("", "file not found; set PLATFORM_CONFIG to your platform.yml")],
        ) from None
    except UnicodeDecodeError as exc:
        where = f"byte {exc.start}"
        raise ConfigError(
            str(path), [Problem("", f"not UTF-8 text ({where}); save the file as UTF-8")]
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), [Problem("", f"cannot read: {exc.strerror}")]) from None
    model = parse_platform_model(text, source=str(path))
    # templates_dir is written relative to the file, so it means the same from any cwd
    templates_dir = (path.parent / model.templates_dir).resolve()
    return model.model_copy(update={"templates_dir": str(templates_dir)})


def parse_platform_model(text: str, *, source: str = "platform.yml") -> PlatformModel:
    """Validate YAML text as a PlatformModel; raise ConfigError listing every problem."""
    model, problems = check_platform_text(text)
    if model is None or problems:
        raise ConfigError(source, problems)
    return model


def check_platform_text(text: str) -> tuple[PlatformModel | None, list[Problem]]:
    """Every problem in the YAML text at once: syntax, then schema and cross-references."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        return None, [Problem("", f"not valid YAML: {reason}", line)]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [Problem("", "the top level must be a mapping (teams:, services:, ...)", 1)]
    model: PlatformModel | None
    try:
        model = PlatformModel.model_validate(data)
        problems = []
    except ValidationError as exc:
        model, problems = None, _schema_problems(exc)
    problems += cross_reference_problems(data)
    return model, [_with_line(p, root) for p in problems]


def cross_reference_problems(data: dict[str, Any]) -> list[Problem]:
    """Names that point at nothing: owners, environments, approver teams, name shapes.

    Works on the raw mapping, so it can report alongside schema errors.
    """
    problems: list[Problem] = []
    teams, envs, services = (_mapping(data, key) for key in ("teams", "environments", "services"))
    servers = _mapping(data, "database_servers")
    kinds = (("team", teams), ("environment", envs), ("service", services))
    for kind, names in (*kinds, ("database_server", servers)):
        for name in names:
            if not re.match(NAME_PATTERN, str(name)):
                problems.append(
                    Problem(
                        f"{kind}s.{name}",
                        f"{kind} name {str(name)!r} must be lowercase letters, digits and '-', "
                        "start with a letter, and be at most 40 characters",
                    )
                )

    def ref(path: str, kind: str, value: Any, known: dict[str, Any]) -> None:
        if isinstance(value, str) and value not in known:
            problems.append(
                Problem(path, f"{kind} '{value}' is not defined{did_you_mean(value, known)}")
            )

    for name, env in envs.items():
        if isinstance(env, dict):
            server = env.get("database_server")
            ref(f"environments.{name}.database_server", "database server", server, servers)
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        ref(f"services.{name}.owner", "team", service.get("owner"), teams)
        for i, env in enumerate(_sequence(service, "environments")):
            ref(f"services.{name}.environments[{i}]", "environment", env, envs)
    for i, policy in enumerate(_sequence(data, "approval_policies")):
        if not isinstance(policy, dict):
            continue
        here = f"approval_policies[{i}]"
        match = _mapping(policy, "match")
        ref(f"{here}.match.environment", "environment", match.get("environment"), envs)
        ref(f"{here}.match.service", "service", match.get("service"), services)
        ref(f"{here}.match.team", "team", match.get("team"), teams)
        approvers = _mapping(policy, "approvers")
        for j, team in enumerate(_sequence(approvers, "teams")):
            ref(f"{here}.approvers.teams[{j}]", "team", team, teams)
        wants_votes = policy.get("approvals", 1) != 0
        if wants_votes and not (approvers.get("teams") or approvers.get("usergroups")):
            problems.append(
                Problem(
                    f"{here}.approvers",
                    "approvals are required but nobody may give them; "
                    "list approvers.teams or approvers.usergroups",
                )
            )
    on_demand = _mapping(data, "on_demand")
    if on_demand:
        ref("on_demand.template", "environment", on_demand.get("template", "staging"), envs)
        for team in _mapping(on_demand, "teams"):
            ref(f"on_demand.teams.{team}", "team", team, teams)
    return problems


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _sequence(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    return value if isinstance(value, list) else []


def _schema_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        path = _dotted(loc)
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            known = _field_names(PlatformModel, loc[:-1])
            message = f"unknown key '{key}'{did_you_mean(key, known)}"
        elif error["type"] == "missing":
            message = "is required"
        elif error["type"] == "literal_error":
            expected = error.get("ctx", {}).get("expected", "")
            message = f"'{error.get('input')}' is not allowed; use one of {expected}"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(Problem(path, message))
    return problems


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model found by walking `loc` (for did-you-mean on unknown keys)."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        else:  # a dict[str, X] or tuple[X, ...]: step into X
            args = getattr(current, "__args__", ())
            current = args[-1] if args and args[-1] is not Ellipsis else (args[0] if args else None)
            if str(current).startswith("typing.Optional") or current is None:
                return []
    while not (isinstance(current, type) and issubclass(current, BaseModel)):
        args = [a for a in getattr(current, "__args__", ()) if a is not Ellipsis]
        if not args:
            return []
        current = next(
            (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[-1]
        )
    return list(current.model_fields)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _with_line(problem: Problem, root: yaml.Node | None) -> Problem:
    """Attach the line of the YAML node the problem's path points at (or its nearest parent).

    The path's last part points at the key itself when it is a mapping key, so a bad
    name or an unknown key is reported on its own line.
    """
    node, found = root, None
    for part in _path_parts(problem.path):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if str(k.value) == part), None)
            found = pair[0] if pair else found
            node = pair[1] if pair else None
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            found = node
        else:
            node = None
        if node is None:
            break
    if found is None:
        return problem
    return Problem(problem.path, problem.message, found.start_mark.line + 1)


def _path_parts(path: str) -> list[str]:
    """Split a.b[0].c into parts; names may contain dots only as the known top-level keys."""
    parts: list[str] = []
    for piece in re.split(r"(\[\d+\])", path):
        if piece.startswith("[") and piece.endswith("]"):
            parts.append(piece[1:-1])
        elif piece:
            head, _, rest = piece.lstrip(".").partition(".")
            parts.append(head)
            if rest:
                parts.extend(rest.split("."))
    return parts
