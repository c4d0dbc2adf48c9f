"""`scripts/bootstrap`: what it installs, or the one line it says when it cannot.

Each test runs a copy of the script in a scratch checkout whose .venv is already
current, with PATH limited to a folder of the few tools it needs, so which programs
are "installed" is up to the test. `--dry-run` and `--no-apt` (what a non-root user
gets) show the messages without installing anything; a fake `apt-get` records what
the script would have run as root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.fakes import REPO_ROOT

TOOLS = ("bash", "sha256sum", "cut", "dirname", "sed", "cat")
DEBIAN = ["prometheus", "prometheus-alertmanager", "wrk", "nodejs", "chromium"]
PROGRAMS = ["prometheus", "prometheus-alertmanager", "wrk", "node", "chromium"]
INSTALL = "apt-get install -y --no-install-recommends"


def executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout with the real script and a .venv that is current (so step 1 is quiet)."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts" / "bootstrap", root / "scripts" / "bootstrap")
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    executable(root / ".venv" / "bin" / "python")
    executable(root / ".venv" / "bin" / "platform-bot")
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    (root / ".venv" / ".platform-bot-installed").write_text(f"{digest}\n")
    return root


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A PATH folder with only the tools the script needs: no Debian programs yet."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run scripts/bootstrap"
        (folder / tool).symlink_to(found)
    return folder


def bootstrap(
    checkout: Path, path: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(path / "bash"), str(checkout / "scripts" / "bootstrap"), *args],
        env={"PATH": str(path), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def fake_apt_get(path: Path, log: Path) -> None:
    executable(path / "apt-get", f'#!{path / "bash"}\necho "$*" >> {log}\n')


def test_not_root_says_in_one_line_what_to_install(checkout: Path, path: Path) -> None:
    fake_apt_get(path, path / "apt.log")

    done = bootstrap(checkout, path, "--no-apt")

    assert done.returncode == 0
    assert done.stdout == ""
    assert done.stderr == (
        f"bootstrap: missing for the tests and the sandbox: {' '.join(DEBIAN)}; "
        f"install them with: sudo {INSTALL} {' '.join(DEBIAN)}\n"
    )
    assert not (path / "apt.log").exists()


def test_without_apt_get_it_names_the_packages_and_the_variables(
    checkout: Path, path: Path
) -> None:
    done = bootstrap(checkout, path, "--dry-run", "--no-apt")

    assert done.returncode == 0
    [line] = done.stderr.splitlines()
    assert line.startswith(f"bootstrap: missing for the tests and the sandbox: {' '.join(DEBIAN)}")
    assert "PLATFORM_BOT_PROMETHEUS" in line and "PLATFORM_BOT_ALERTMANAGER" in line


def test_only_what_is_missing_is_named(checkout: Path, path: Path) -> None:
    executable(path / "wrk")
    executable(path / "node")
    executable(path / "chromium")
    executable(path / "alertmanager")  # upstream's name for Debian's prometheus-alertmanager
    fake_apt_get(path, path / "apt.log")

    done = bootstrap(checkout, path, "--dry-run", "--no-apt")

    assert "missing for the tests and the sandbox: prometheus;" in done.stderr


def test_a_variable_naming_the_binary_counts_as_installed(
    checkout: Path, path: Path, tmp_path: Path
) -> None:
    for program in ("wrk", "node", "chromium"):
        executable(path / program)
    prometheus = executable(tmp_path / "opt" / "prometheus-2.53" / "prometheus")
    alertmanager = tmp_path / "opt" / "am"  # not there
    fake_apt_get(path, path / "apt.log")

    done = bootstrap(
        checkout,
        path,
        "--dry-run",
        "--no-apt",
        PLATFORM_BOT_PROMETHEUS=str(prometheus),
        PLATFORM_BOT_ALERTMANAGER=str(alertmanager),
    )

    lines = done.stderr.splitlines()
    assert lines[0] == (
        f"bootstrap: PLATFORM_BOT_ALERTMANAGER={alertmanager} is not executable; "
        "looking on PATH instead"
    )
    assert "missing for the tests and the sandbox: prometheus-alertmanager;" in lines[1]


def test_with_everything_there_it_says_nothing(checkout: Path, path: Path) -> None:
    for program in PROGRAMS:
        executable(path / program)
    fake_apt_get(path, path / "apt.log")

    done = bootstrap(checkout, path)

    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not (path / "apt.log").exists()


def test_a_missing_virtual_environment_would_be_created(checkout: Path, path: Path) -> None:
    shutil.rmtree(checkout / ".venv")
    executable(path / "python3")

    done = bootstrap(checkout, path, "--dry-run", "--no-apt")

    assert done.stderr.splitlines()[:2] == [
        "bootstrap: would create .venv with python3",
        "bootstrap: would install platform-bot and its dev tools into .venv "
        "(pip install -e '.[dev]')",
    ]
    assert not (checkout / ".venv").exists()


def test_an_unknown_option_is_refused(checkout: Path, path: Path) -> None:
    done = bootstrap(checkout, path, "--yes")

    assert done.returncode == 2
    assert done.stderr == "bootstrap: unknown option --yes (try --help)\n"


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the apt-get path is taken only as root (CI runs as root)"
)


@needs_root
def test_as_root_a_dry_run_says_what_apt_get_would_install(checkout: Path, path: Path) -> None:
    fake_apt_get(path, path / "apt.log")
    executable(path / "node")
    executable(path / "chromium")

    done = bootstrap(checkout, path, "--dry-run")

    assert done.stderr == (
        "bootstrap: would run: apt-get update && "
        f"{INSTALL} prometheus prometheus-alertmanager wrk\n"
    )
    assert not (path / "apt.log").exists()


@needs_root
def test_as_root_it_installs_what_is_missing_with_apt_get(checkout: Path, path: Path) -> None:
    log = path / "apt.log"
    fake_apt_get(path, log)
    for program in ("prometheus", "prometheus-alertmanager", "node", "chromium"):
        executable(path / program)

    done = bootstrap(checkout, path)

    assert done.returncode == 0, done.stderr
    assert done.stderr == "bootstrap: installing from Debian: wrk\n"
    assert log.read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends wrk",
    ]


# -- the stand-ins find the binaries the same way: variable, else PATH --------------------


def test_stand_ins_take_the_variable_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandbox.standins.binaries import PROMETHEUS

    mine = executable(tmp_path / "opt" / "prometheus")
    monkeypatch.setenv("PLATFORM_BOT_PROMETHEUS", str(mine))

    assert PROMETHEUS.find() == mine


def test_stand_ins_look_on_path_under_every_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.standins.binaries import ALERTMANAGER

    upstream = executable(tmp_path / "alertmanager")
    monkeypatch.delenv("PLATFORM_BOT_ALERTMANAGER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    assert ALERTMANAGER.find() == upstream


def test_stand_ins_say_what_to_install_or_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.standins.binaries import PROMETHEUS, BinaryNotFound

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PLATFORM_BOT_PROMETHEUS", raising=False)
    with pytest.raises(BinaryNotFound) as missing:
        PROMETHEUS.find()
    assert str(missing.value) == (
        "Prometheus is not installed (looked for prometheus on PATH); run scripts/bootstrap, "
        "or `apt-get install -y --no-install-recommends prometheus`, "
        "or set PLATFORM_BOT_PROMETHEUS to its path"
    )

    monkeypatch.setenv("PLATFORM_BOT_PROMETHEUS", str(tmp_path / "nothing"))
    with pytest.raises(BinaryNotFound, match=r"PLATFORM_BOT_PROMETHEUS=.* is not an executable"):
        PROMETHEUS.find()
    assert not PROMETHEUS.installed()
