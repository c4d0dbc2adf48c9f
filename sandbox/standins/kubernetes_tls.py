"""HTTPS for the Kubernetes stand-in: a CA made at start, and a serving certificate it signs.

A real API server serves only HTTPS, with a certificate its clients trust through the
kubeconfig's ``certificate-authority-data`` (https://kubernetes.io/docs/concepts/
configuration/organize-cluster-access-kubeconfig/, and ``kubectl config set-cluster
--certificate-authority --embed-certs``). kubectl sends a kubeconfig's token only over
TLS (client-go ``tools/clientcmd/client_config.go``, ``DirectClientConfig.ClientConfig``:
"only try to read the auth information if we are secure", guarded by
``restclient.IsConfigTransportTLS``), so the token path and RBAC can only be exercised by
upstream's client over HTTPS.

The keys are ECDSA P-256 (fast to make), made with Debian's ``openssl`` (the
``cryptography`` package is not a dependency of the bot). The serving certificate names
``127.0.0.1``, ``::1`` and ``localhost``, as the stand-in listens on loopback.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class TLSUnavailable(RuntimeError):
    """openssl is missing or failed."""


@dataclass(frozen=True)
class ServingCertificate:
    """The CA (PEM) clients trust, and the server's SSL context."""

    ca_pem: str
    server: ssl.SSLContext

    @property
    def ca_data(self) -> str:
        """The CA as a kubeconfig's ``certificate-authority-data`` (base64 of the PEM)."""
        return base64.b64encode(self.ca_pem.encode()).decode()

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this CA only (for aiohttp and the like)."""
        return ssl.create_default_context(cadata=self.ca_pem)


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise TLSUnavailable(
            "openssl is not installed; the Kubernetes stand-in needs it for HTTPS "
            "(apt-get install -y openssl)"
        )
    done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [binary, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise TLSUnavailable(f"openssl {args[0]} failed: {done.stderr.strip()[-300:]}")


def make_serving_certificate(common_name: str = "kube-apiserver") -> ServingCertificate:
    """A fresh CA and a loopback serving certificate signed by it."""
    with tempfile.TemporaryDirectory(prefix="kube-standin-tls-") as scratch:
        where = Path(scratch)
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=kubernetes-standin-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=where,
        )
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            "tls.key",
            "-out",
            "tls.crt",
            "-days",
            "2",
            "-subj",
            f"/CN={common_name}",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-addext",
            "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            cwd=where,
        )
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(where / "tls.crt", where / "tls.key")
        return ServingCertificate((where / "ca.crt").read_text(), server)
