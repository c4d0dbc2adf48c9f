"""Each shipped template, rendered into a folder, passes its own tests there.

A golden path that hands out a repository whose first pipeline fails is worse than
none, so the rendered Node project runs `node --test` (Node's standard library only, no
`npm install`) and the rendered Python project runs its pytest suite: on its in-memory
store, and on a fresh PostgreSQL database, as its CI would. The description rendered
in is full of quotes, newlines and Jinja syntax, so the app code proves it quotes it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from catalog.template_checks import SAMPLE_DESCRIPTIONS, sample_context
from catalog.templates import Template, load_templates
from tests.unit.fakes import REPO_ROOT

TEMPLATES = load_templates(REPO_ROOT / "templates")
HOSTILE_DESCRIPTION = SAMPLE_DESCRIPTIONS[1]


def render_into(template: Template, folder: Path) -> dict[str, str]:
    files = template.render(sample_context(template, description=HOSTILE_DESCRIPTION))
    for path, content in files.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return files


def run(command: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a skeleton's tests; the output is shown when they fail."""
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def child_environment(**extra: str) -> dict[str, str]:
    """PATH and HOME only: no DATABASE_URL, no pytest options of ours leak in."""
    env = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    return {**env, "PYTHONDONTWRITEBYTECODE": "1", **extra}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_rendered_yaml_and_json_file_parses(name: str, tmp_path: Path) -> None:
    files = render_into(TEMPLATES[name], tmp_path)

    parsed = 0
    for path, content in files.items():
        if path.endswith((".yml", ".yaml")):
            assert all(doc is not None for doc in yaml.safe_load_all(content)), path
            parsed += 1
        elif path.endswith(".json"):
            json.loads(content)
            parsed += 1
    assert parsed >= 4  # .gitlab-ci.yml, catalog-info.yaml, two Kubernetes manifests
    entity = yaml.safe_load(files["catalog-info.yaml"])
    assert entity["metadata"]["description"] == HOSTILE_DESCRIPTION


def test_the_node_skeleton_passes_node_test(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "node (20 or later) is needed to test the node-postgres skeleton"
    files = render_into(TEMPLATES["node-postgres"], tmp_path)
    assert json.loads(files["package.json"])["description"] == HOSTILE_DESCRIPTION

    result = run([node, "--test"], cwd=tmp_path, env=child_environment())

    assert "# fail 0" in result.stdout
    assert "# pass 0" not in result.stdout


def pytest_in(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The rendered project's own pytest run: its rootdir and config, none of our plugins."""
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"]
    command += ["--rootdir", str(folder), "-c", str(folder / "pytest.ini")]
    return run(
        command, cwd=folder, env=child_environment(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", **env)
    )


def test_the_python_skeleton_passes_its_own_tests_in_memory(tmp_path: Path) -> None:
    render_into(TEMPLATES["python-fastapi"], tmp_path)

    result = pytest_in(tmp_path)

    assert "test_an_item_posted_is_listed[memory] PASSED" in result.stdout
    assert "[postgres]" not in result.stdout


def test_the_python_skeleton_passes_its_own_tests_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    render_into(TEMPLATES["python-fastapi"], tmp_path)
    plain_url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)

    result = pytest_in(tmp_path, DATABASE_URL=plain_url)

    assert "test_an_item_posted_is_listed[postgres] PASSED" in result.stdout
    assert "test_healthz_and_readyz_answer_ok[postgres] PASSED" in result.stdout
