"""The real Prometheus and Alertmanager, started on loopback for tests and the sandbox.

Alert threads are only honest when the alerts come from the real servers: a Prometheus
rule fires on a metric the test controls, Alertmanager groups it and POSTs its webhook
(payload version 4) to the bot. This module starts the real binaries (Debian's
`prometheus` and `prometheus-alertmanager`, Prometheus 2.42 and Alertmanager 0.25, which
`scripts/bootstrap` installs; found on PATH or through `PLATFORM_BOT_PROMETHEUS` and
`PLATFORM_BOT_ALERTMANAGER`, see `sandbox.standins.binaries`) and serves the metric the
rule watches:

- `MetricTarget`: an aiohttp server with `/metrics` in the text exposition format
  (https://prometheus.io/docs/instrumenting/exposition_formats/), every metric a gauge
  the test sets with `set(name, value, labels)` and drops with `remove(name, labels)`.
- `PrometheusServer`: `prometheus` with one scrape job per target (`target-0`,
  `target-1`, ...; so alerts carry `job` and `instance` labels), the rule file given,
  and Alertmanager as its notifier (`alerting.alertmanagers`, API v2).
- `AlertmanagerServer`: `prometheus-alertmanager` with one route and one
  webhook receiver (`webhook_configs`: `url`, `send_resolved`, and `http_config.
  authorization: {type: Bearer, credentials: <token>}`, so the webhook carries
  `Authorization: Bearer <token>`;
  https://prometheus.io/docs/alerting/latest/configuration/#http_config).

Both servers keep everything in a temporary directory removed on exit and listen on
127.0.0.1 only. Flags and gotchas:

- Prometheus: `--config.file`, `--storage.tsdb.path`, `--web.listen-address`,
  `--web.external-url` (so `generatorURL` points at this server).
- Alertmanager: `--config.file`, `--storage.path`, `--web.listen-address`,
  `--web.external-url` (the webhook's `externalURL`) and `--cluster.listen-address=`
  (empty): without it Alertmanager gossips on 0.0.0.0:9094, a fixed port that
  collides between parallel runs.
- Free ports come from binding port 0 and closing the socket; another process could
  take the port in between, which shows up as a start failure naming the port.
- Readiness is `GET /-/ready` answering 200, within `READY_TIMEOUT` seconds; otherwise
  the process is stopped and the error carries the last lines of its log.
- Timing with the defaults here: the first alert reaches Alertmanager about 5 s after
  Prometheus starts (its discovery publishes targets and Alertmanagers every 5 s, a
  fixed interval). After that a rule with `for: 0s` fires on the first evaluation
  after the scrape that sees the value (1-2 s), and Alertmanager posts after
  `group_wait` (1 s). Prometheus sends a resolved alert as soon as the rule stops
  matching; Alertmanager posts it at the next `group_interval` (1 s).
- A missing binary raises `ObservabilityUnavailable` naming the install command and the
  variable (pytest is not imported here).

Nothing here imports the bot: the servers are the real ones, the bot only talks to them.
"""

from __future__ import annotations

import asyncio
import math
import re
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import aiohttp
import yaml
from aiohttp import web

from sandbox.standins._server import LoopbackServer
from sandbox.standins.binaries import ALERTMANAGER, PROMETHEUS, Binary, BinaryNotFound

READY_TIMEOUT = 20.0
"""Seconds a server gets to answer 200 on /-/ready."""
STOP_TIMEOUT = 10.0
"""Seconds a server gets to exit after SIGTERM before it is killed."""

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class ObservabilityUnavailable(BinaryNotFound):
    """The Prometheus or Alertmanager binary is not installed on this machine."""


# -- the metric a rule watches -----------------------------------------------------------


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricTarget(LoopbackServer):
    """A scrape target whose gauges the test sets: `GET /metrics` in the text format."""

    service: ClassVar[str] = "metric target"

    def __init__(self) -> None:
        super().__init__()
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)

    @property
    def target(self) -> str:
        """`host:port`, as a Prometheus `static_configs` target."""
        return self.base_url.removeprefix("http://")

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """Set the gauge `name{labels}` to `value` (seen at the next scrape)."""
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        for label in labels or {}:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r}")
        self._values.setdefault(name, {})[self._key(labels)] = float(value)

    def remove(self, name: str, labels: dict[str, str] | None = None) -> None:
        """Stop exposing `name{labels}` (Prometheus marks the series stale)."""
        series = self._values.get(name, {})
        series.pop(self._key(labels), None)
        if not series:
            self._values.pop(name, None)

    @staticmethod
    def _key(labels: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((labels or {}).items()))

    def exposition(self) -> str:
        """Every gauge in the text exposition format, version 0.0.4."""
        lines: list[str] = []
        for name in sorted(self._values):
            lines.append(f"# TYPE {name} gauge")
            for key, value in sorted(self._values[name].items()):
                labels = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in key)
                series = f"{name}{{{labels}}}" if labels else name
                lines.append(f"{series} {_format_value(value)}")
        return "".join(f"{line}\n" for line in lines)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            text=self.exposition(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


# -- running a binary --------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _host_port(target: str) -> str:
    """`http://127.0.0.1:9100` or `127.0.0.1:9100` -> `127.0.0.1:9100`."""
    return urlsplit(target).netloc if "://" in target else target


class _BinaryServer:
    """One server process with its own temporary directory; subclasses write its config."""

    name: ClassVar[str] = "server"
    binary: ClassVar[Binary]

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._directory: Path | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The server's base URL, e.g. `http://127.0.0.1:41234`."""
        if self._url is None:
            raise RuntimeError(f"{self.name} is not started (or stopped); use `async with`")
        return self._url

    def arguments(self, directory: Path, address: str) -> list[str]:
        """Write the config into `directory`; return the command-line flags."""
        raise NotImplementedError

    def _prepare(self) -> list[str]:
        """Check the binary, make the temporary directory and config; the full command."""
        try:
            binary = self.binary.find()
        except BinaryNotFound as exc:
            raise ObservabilityUnavailable(str(exc)) from None
        directory = Path(tempfile.mkdtemp(prefix=f"platform-bot-{self.name.lower()}-"))
        address = f"127.0.0.1:{free_port()}"
        self._directory = directory
        self._url = f"http://{address}"
        return [str(binary), *self.arguments(directory, address)]

    async def start(self) -> None:
        """Start the process and wait until it answers on /-/ready."""
        command = await asyncio.to_thread(self._prepare)
        assert self._directory is not None
        try:
            with (self._directory / "server.log").open("wb") as log:
                self._process = await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=self._directory,
                )
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self) -> None:
        assert self._process is not None
        ready = f"{self.url}/-/ready"
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while True:
                try:
                    async with session.get(ready) as response:
                        if response.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if self._process.returncode is not None:
                    raise RuntimeError(
                        f"{self.name} exited with code {self._process.returncode} before "
                        f"it was ready:\n{self.log_tail()}"
                    )
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(
                        f"{self.name} was not ready at {ready} within {READY_TIMEOUT:.0f} s:\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        """What the server logged to explain a failure: its error lines if it logged
        any (both servers write logfmt with `level=error`), else its last lines."""
        if self._directory is None:
            return ""
        log = self._directory / "server.log"
        if not log.exists():
            return ""
        logged = log.read_text(errors="replace").splitlines()
        errors = [line for line in logged if "level=error" in line]
        return "\n".join((errors or logged)[-lines:])

    async def stop(self) -> None:
        """Terminate (then kill, if it hangs) and remove the temporary directory."""
        process, self._process = self._process, None
        self._url = None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
        directory, self._directory = self._directory, None
        if directory is not None:
            await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _write_yaml(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)


# -- Prometheus --------------------------------------------------------------------------


class PrometheusServer(_BinaryServer):
    """Debian's Prometheus scraping `targets`, evaluating `rules_yaml`, notifying
    `alertmanager_url` (config: https://prometheus.io/docs/prometheus/2.42/configuration/
    configuration/)."""

    name: ClassVar[str] = "Prometheus"
    binary: ClassVar[Binary] = PROMETHEUS

    def __init__(
        self,
        *,
        rules_yaml: str,
        targets: Sequence[str],
        alertmanager_url: str | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
    ) -> None:
        super().__init__()
        self.rules_yaml = rules_yaml
        self.targets = list(targets)
        self.alertmanager_url = alertmanager_url
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval

    def config(self, rules_path: Path) -> dict[str, Any]:
        """prometheus.yml as a dict."""
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(rules_path)],
            "scrape_configs": [
                {
                    "job_name": f"target-{index}",
                    "scrape_interval": self.scrape_interval,
                    "static_configs": [{"targets": [_host_port(target)]}],
                }
                for index, target in enumerate(self.targets)
            ],
        }
        if self.alertmanager_url is not None:
            parts = urlsplit(self.alertmanager_url)
            alertmanager: dict[str, Any] = {
                "api_version": "v2",
                "scheme": parts.scheme or "http",
                "static_configs": [{"targets": [parts.netloc]}],
            }
            if parts.path.strip("/"):
                alertmanager["path_prefix"] = parts.path
            config["alerting"] = {"alertmanagers": [alertmanager]}
        return config

    def arguments(self, directory: Path, address: str) -> list[str]:
        rules_path = directory / "rules.yml"
        rules_path.write_text(self.rules_yaml)
        _write_yaml(directory / "prometheus.yml", self.config(rules_path))
        return [
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address={address}",
            f"--web.external-url=http://{address}",
        ]


# -- Alertmanager ------------------------------------------------------------------------


class AlertmanagerServer(_BinaryServer):
    """Debian's Alertmanager sending every alert group to one webhook (config:
    https://prometheus.io/docs/alerting/0.25/configuration/)."""

    name: ClassVar[str] = "Alertmanager"
    binary: ClassVar[Binary] = ALERTMANAGER

    def __init__(
        self,
        *,
        webhook_url: str,
        bearer_token: str | None,
        group_wait: str = "1s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
        group_by: Sequence[str] = ("alertname", "service"),
        send_resolved: bool = True,
    ) -> None:
        super().__init__()
        self.webhook_url = webhook_url
        self.bearer_token = bearer_token
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.group_by = list(group_by)
        self.send_resolved = send_resolved

    def __repr__(self) -> str:  # never show the token
        return f"AlertmanagerServer(webhook_url={self.webhook_url!r}, url={self._url!r})"

    def config(self) -> dict[str, Any]:
        """alertmanager.yml as a dict (it holds the bearer token: written 0600)."""
        webhook: dict[str, Any] = {"url": self.webhook_url, "send_resolved": self.send_resolved}
        if self.bearer_token is not None:
            webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials": self.bearer_token}
            }
        return {
            "route": {
                "receiver": "platform-bot",
                "group_by": self.group_by,
                "group_wait": self.group_wait,
                "group_interval": self.group_interval,
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [{"name": "platform-bot", "webhook_configs": [webhook]}],
        }

    def arguments(self, directory: Path, address: str) -> list[str]:
        _write_yaml(directory / "alertmanager.yml", self.config())
        return [
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address={address}",
            f"--web.external-url=http://{address}",
            "--cluster.listen-address=",
        ]
