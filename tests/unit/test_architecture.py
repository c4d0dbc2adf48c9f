"""The layout keeps its shape: rooms import downwards, features never import each other,
no import circles, no module a newcomer has to scroll through for long.

The rules themselves are import-linter contracts in pyproject.toml (docs/architecture.md
explains them); these tests prove the contracts bite, and check what import-linter
cannot (circles, sizes).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("kernel", "catalog", "adapters", "engine", "features", "app", "sandbox")
FEATURES = (
    "general",
    "releases",
    "approvals",
    "alerts",
    "new_service",
    "pipelines",
    "secrets",
    "access",
)
MAX_LINES = 600
"""No module over this many lines outside sandbox/standins (the stand-ins mirror whole
upstream APIs and are allowed to be long)."""


def test_there_are_no_import_circles() -> None:
    graph = grimp.build_graph(*ROOMS, include_external_packages=False)
    cycles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert cycles == []


def test_no_module_is_too_long_to_read() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for room in ROOMS
        for path in (ROOT / room).rglob("*.py")
        if "standins" not in path.parts
        and "migrations" not in path.parts
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these (at most {MAX_LINES} lines): {long}"


def test_every_feature_registers_itself_explicitly() -> None:
    for name in FEATURES:
        init = (ROOT / "features" / name / "__init__.py").read_text(encoding="utf-8")
        assert "def register(" in init, f"features/{name} has no register()"
    bootstrap = (ROOT / "app" / "bootstrap.py").read_text(encoding="utf-8")
    for name in FEATURES:
        assert f"features.{name}.register(registry" in bootstrap, f"{name} is not registered"
    assert "pkgutil" not in bootstrap and "iter_modules" not in bootstrap


def test_the_contracts_hold_on_the_tree() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        # a feature reaching into another feature (it must ask through a kernel port)
        ("features/alerts/_wrong.py", "import features.releases.planning", "features"),
        # the engine reaching up into a feature
        ("engine/_wrong.py", "import features.approvals.gate", "rooms"),
        # a feature using an infrastructure SDK directly
        ("features/releases/_wrong.py", "import kubernetes", "sdks"),
        # a stand-in importing the bot it stands in for
        ("sandbox/standins/_wrong.py", "import kernel.errors", "standins"),
        # a feature building a real adapter itself
        ("features/new_service/_wrong.py", "import adapters.gitlab", "ports"),
    ],
)
def test_a_wrong_import_fails_the_contracts(
    tmp_path: Path, module: str, bad_import: str, broken: str
) -> None:
    for room in ROOMS:
        shutil.copytree(ROOT / room, tmp_path / room, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / module).write_text(f'"""A deliberate mistake."""\n\n{bad_import}\n')

    done = _lint_imports(tmp_path)

    assert done.returncode != 0, done.stdout[-2000:]
    assert "BROKEN" in done.stdout
    names = {
        "features": "Features never import each other",
        "rooms": "Rooms, top to bottom",
        "sdks": "Only adapters/ talks to the infrastructure SDKs",
        "standins": "Stand-ins import nothing of ours",
        "ports": "Only app/ builds the real adapters",
    }
    broken_line = next(line for line in done.stdout.splitlines() if names[broken] in line)
    assert "BROKEN" in broken_line or "BROKEN" in done.stdout.split(names[broken], 1)[1][:200]


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
        ],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's algorithm over the module graph (iterative, no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = 0
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found
