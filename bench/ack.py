"""Ack benchmark: `/platform help` through the bot's whole HTTP stack vs a bare Bolt app.

One command, figures printed (see bench/README.md for how to read them):

    .venv/bin/python bench/ack.py [--rounds 5] [--duration 10] [--connections 16]
                                  [--json results.json]

Server A ("platform-bot", bench/serve_bot.py) is the real bot on the sandbox stack:
aiohttp server, Bolt with our middleware, the front door, the command registry and the
help command, SQLite in a temp dir, the Run worker and the outbox running. Server B
("bare Bolt", bench/serve_bare.py) is a Bolt AsyncApp whose `/platform` listener only
acks. Both get the same signed slash-command body from the same load generator (wrk on
loopback, or bench/loadgen.py if wrk is missing), alternating A,B / B,A round by round,
so the ratios are measured side by side in one run on a shared, noisy machine.

Server C ("aiohttp floor", bench/serve_floor.py) is a plain aiohttp handler that verifies
the signature and acks: the bot's throughput as a fraction of C's is printed (aim >= 0.4).

Targets (issue 18): throughput(A)/throughput(B) >= 1.5 and p99(A)/p99(B) <= 0.7, on the
median over rounds of each round's ratio. Missing a target is a result, not an error:
the exit status is 0 whenever the benchmark itself ran; 1 when it could not (a server did
not start, a request was refused, wrk reported non-2xx responses, ...).
Also measured: time from process start to the first GET /readyz 200 and idle RSS (median
over 3 starts each), and whether SIGTERM shuts each server down cleanly.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from machine import loadavg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # run from a checkout even if the package is not installed

from sandbox.app.stack import SANDBOX_WORKSPACE, SIGNING_SECRET  # noqa: E402
from sandbox.standins.slack_client import SlackSender  # noqa: E402

USER, CHANNEL, TEXT = "alice", "platform", "help"
THROUGHPUT_TARGET = 1.5  # A's req/s at least this multiple of B's (issue 18)
P99_TARGET = 0.7  # A's p99 at most this multiple of B's (issue 18)
FLOOR_AIM = 0.4  # A's req/s as a share of C's, the plain aiohttp floor: an aim, not a gate
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
IDLE_SECONDS = 2.0
STARTS = 3
SIGNATURE_WINDOW = 300  # Slack accepts a timestamp for 5 minutes
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark itself failed (not: a target was missed)."""


@dataclass(frozen=True)
class ServerSpec:
    key: str  # "A" or "B"
    name: str
    script: Path
    expects_body: bool  # A's ack carries the help text; B's bare ack is empty
    args: tuple[str, ...] = ()


BOT = ServerSpec("A", "platform-bot", BENCH / "serve_bot.py", expects_body=True)
BARE = ServerSpec(
    "B",
    "bare Bolt",
    BENCH / "serve_bare.py",
    expects_body=False,
    # so that serve_bare.py need not import the bot to learn them
    args=("--signing-secret", SIGNING_SECRET, "--workspace", json.dumps(asdict(SANDBOX_WORKSPACE))),
)
FLOOR = ServerSpec(
    "C",
    "aiohttp floor",
    BENCH / "serve_floor.py",
    expects_body=False,
    args=("--signing-secret", SIGNING_SECRET),
)
LOADED = (BOT, BARE, FLOOR)


@dataclass
class Server:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    response_url: str
    ready_seconds: float
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def rss_mib(self, field_name: str = "VmRSS") -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
        if match is None:
            raise BenchError(f"no {field_name} in /proc/{self.proc.pid}/status")
        return int(match.group(1)) / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process (all its threads) so far."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


@dataclass
class Measurement:
    server: str
    round: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_us_per_request: float
    socket_errors: dict[str, int] = field(default_factory=dict)


# --- servers ------------------------------------------------------------------------------


def start_server(spec: ServerSpec, workdir: Path, tag: str) -> Server:
    """Start a server; return once GET /readyz answers 200 (timed from just before exec)."""
    log_path = workdir / f"{spec.key}-{tag}.log"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(spec.script), *spec.args],
            cwd=ROOT,
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,  # a Ctrl-C reaches us; we stop the servers ourselves
        )
    try:
        line = _read_line(proc, started + START_TIMEOUT)
        parts = line.split()
        if len(parts) != 3 or parts[0] != "READY":
            raise BenchError(f"{spec.name} printed {line!r}, expected 'READY <port> <url>'")
        port = int(parts[1])
        _wait_ready(port, started + START_TIMEOUT, spec.name)
        if parts[2] == "-":  # the floor has no Slack stand-in: any URL will do, it is not called
            parts[2] = f"http://127.0.0.1:{port}/response"
        ready_seconds = time.perf_counter() - started
    except BaseException:
        _kill(proc)
        _show_log(log_path)
        raise
    return Server(spec, proc, port, parts[2], ready_seconds, log_path)


def _child_env() -> dict[str, str]:
    """Our environment, with this checkout first on the path (whatever is installed)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


def stop_server(server: Server) -> bool:
    """SIGTERM and wait; True if it exited 0 within STOP_TIMEOUT."""
    if server.proc.poll() is not None:
        return False
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill(server.proc)
        print(f"  ! {server.spec.name} did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM")
        return False
    if code != 0:
        print(f"  ! {server.spec.name} exited {code} on SIGTERM")
        _show_log(server.log_path)
    return code == 0


def _read_line(proc: subprocess.Popen[bytes], deadline: float) -> str:
    assert proc.stdout is not None
    fd, buffer = proc.stdout.fileno(), b""
    while b"\n" not in buffer:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise BenchError(f"no READY line within {START_TIMEOUT:.0f} s")
        readable, _, _ = select.select([fd], [], [], min(remaining, 0.5))
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise BenchError(f"server exited ({proc.wait()}) before printing READY")
            buffer += chunk
    return buffer.split(b"\n", 1)[0].decode()


def _wait_ready(port: int, deadline: float, name: str) -> None:
    while time.perf_counter() < deadline:
        try:
            status, _ = _request(port, "GET", "/readyz")
        except OSError:
            status = 0
        if status == 200:
            return
        time.sleep(0.005)
    raise BenchError(f"{name}: GET /readyz did not answer 200 within {START_TIMEOUT:.0f} s")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def _show_log(path: Path) -> None:
    text = path.read_text(errors="replace").strip() if path.exists() else ""
    if text:
        print(f"  --- last lines of the server log {path.name} (A: platform-bot, B: bare Bolt) ---")
        for line in text.splitlines()[-15:]:
            print(f"  {line}")


def _request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@contextmanager
def running(spec: ServerSpec, workdir: Path, tag: str) -> Iterator[Server]:
    server = start_server(spec, workdir, tag)
    try:
        yield server
    except BaseException:
        _show_log(server.log_path)
        raise
    finally:
        stop_server(server)


# --- the request ----------------------------------------------------------------------------


def signed_request(server: Server) -> tuple[bytes, dict[str, str]]:
    """`/platform help` typed by alice in #platform, signed now, as Slack sends it."""
    ws = SANDBOX_WORKSPACE
    who, where = ws.user(USER), ws.channel(CHANNEL)
    fields = {
        "token": secrets.token_hex(12),
        "team_id": ws.team_id,
        "team_domain": ws.domain,
        "channel_id": where.id,
        "channel_name": where.name,
        "user_id": who.id,
        "user_name": who.name,
        "command": "/platform",
        "text": TEXT,
        "api_app_id": ws.app_id,
        "is_enterprise_install": "false",
        "response_url": server.response_url,
        "trigger_id": f"{secrets.randbelow(10**10)}.{secrets.randbelow(10**10)}.bench",
    }
    body = urlencode(fields).encode()
    sender = SlackSender(events_url=server.url, signing_secret=SIGNING_SECRET, workspace=ws)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        **sender.sign(body, int(time.time())),
    }
    return body, headers


def precheck(server: Server, body: bytes, headers: dict[str, str]) -> None:
    """One request by hand: 200 (with the help text for A), and a forged signature gets 401."""
    status, answer = _request(server.port, "POST", "/slack/events", body, headers)
    if status != 200:
        raise BenchError(f"{server.spec.name} answered {status} to the signed command: {answer!r}")
    if server.spec.expects_body:
        try:
            text = json.loads(answer)["text"]
        except (ValueError, KeyError, TypeError):
            raise BenchError(
                f"{server.spec.name} acked without the help text: {answer!r}"
            ) from None
        if "/platform" not in text:
            raise BenchError(f"{server.spec.name} acked with something else: {text[:200]!r}")
    forged = {**headers, "X-Slack-Signature": "v0=" + "0" * 64}
    status, _ = _request(server.port, "POST", "/slack/events", body, forged)
    if status != 401:
        raise BenchError(f"{server.spec.name} answered {status}, not 401, to a forged signature")


# --- load generators ----------------------------------------------------------------------

WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50":%.0f,"p75":%.0f,"p90":%.0f,"p99":%.0f,' ..
    '"p999":%.0f,"mean":%.1f,"max":%.0f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.mean, latency.max))
end
"""


def _lua_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass
class LoadGenerator:
    kind: str  # "wrk" or "python"
    connections: int
    threads: int
    workdir: Path
    wrk_path: str | None = None

    def run(self, server: Server, seconds: float, tag: str) -> dict[str, Any]:
        body, headers = signed_request(server)  # a fresh timestamp for every run
        precheck(server, body, headers)
        if self.kind == "wrk":
            script = self.workdir / f"{tag}.lua"
            lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body.decode())}"]
            lines += [
                f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
            ]
            script.write_text("\n".join(lines) + "\n" + WRK_DONE)
            assert self.wrk_path is not None
            command = [
                self.wrk_path,
                f"-t{self.threads}",
                f"-c{self.connections}",
                f"-d{seconds:g}s",
                "--timeout",
                "5s",
                "--latency",
                "-s",
                str(script),
                server.url,
            ]
        else:
            body_file = self.workdir / f"{tag}.body"
            body_file.write_bytes(body)
            command = [
                sys.executable,
                str(BENCH / "loadgen.py"),
                server.url,
                "--body-file",
                str(body_file),
                "--headers-json",
                json.dumps(headers),
                "--connections",
                str(self.connections),
                "--duration",
                f"{seconds:g}",
            ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise BenchError(f"{self.kind} failed ({done.returncode}): {done.stderr.strip()}")
        found = re.search(r"^BENCH_JSON (.*)$", done.stdout, re.MULTILINE)
        if found is None:
            raise BenchError(f"no BENCH_JSON line in the {self.kind} output:\n{done.stdout}")
        result: dict[str, Any] = json.loads(found.group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
        refused = max(int(non2xx.group(1)) if non2xx else 0, int(result["status"]))
        if refused:
            raise BenchError(
                f"{server.spec.name}: {refused} non-2xx/3xx responses (a rejected signature?); "
                "they must not count as throughput. Output:\n" + done.stdout
            )
        if result["connect"] or result["requests"] == 0:
            raise BenchError(f"{server.spec.name}: no requests got through:\n{done.stdout}")
        return result


def find_load_generator(
    choice: str, connections: int, threads: int, workdir: Path
) -> LoadGenerator:
    if choice in ("auto", "wrk"):
        wrk = shutil.which("wrk") or _install_wrk()
        if wrk:
            return LoadGenerator("wrk", connections, threads, workdir, wrk)
        if choice == "wrk":
            raise BenchError("wrk is not installed: apt-get install -y --no-install-recommends wrk")
        print(
            "! wrk is not installed and could not be installed "
            "(apt-get install -y --no-install-recommends wrk);\n"
            "  falling back to bench/loadgen.py (Python, weaker: it competes with the servers\n"
            "  for CPU, so absolute figures are lower and ratios are pulled towards 1)."
        )
    return LoadGenerator("python", connections, threads, workdir)


def _install_wrk() -> str | None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    print("wrk is missing; trying: apt-get install -y --no-install-recommends wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "install", "-y", "--no-install-recommends", "wrk"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "wrk"],
    ):
        subprocess.run(command, env=env, capture_output=True, timeout=300, check=False)
        if shutil.which("wrk"):
            return shutil.which("wrk")
    return None


# --- the phases ---------------------------------------------------------------------------


def measure_startup(workdir: Path) -> dict[str, dict[str, Any]]:
    """Start each server STARTS times (A,B,B,A,A,B): time to /readyz 200, idle RSS, clean stop."""
    results: dict[str, dict[str, Any]] = {
        s.key: {"ready_s": [], "idle_rss_mib": [], "clean_stop": []} for s in (BOT, BARE)
    }
    for i in range(STARTS):
        for spec in (BOT, BARE) if i % 2 == 0 else (BARE, BOT):
            server = start_server(spec, workdir, f"start{i}")
            try:
                time.sleep(IDLE_SECONDS)
                rss = server.rss_mib()
            finally:
                clean = stop_server(server)
            r = results[spec.key]
            r["ready_s"].append(server.ready_seconds)
            r["idle_rss_mib"].append(rss)
            r["clean_stop"].append(clean)
            print(
                f"  start {i + 1}/{STARTS} {spec.name:<13} ready in {server.ready_seconds:5.2f} s"
                f"   idle RSS {rss:6.1f} MiB   SIGTERM {'clean' if clean else 'NOT CLEAN'}"
            )
    return results


def measure_load(
    gen: LoadGenerator, rounds: int, duration: float, warmup: float, workdir: Path
) -> tuple[list[Measurement], dict[str, dict[str, float]]]:
    measurements: list[Measurement] = []
    after: dict[str, dict[str, float]] = {}
    with (
        running(BOT, workdir, "load") as a,
        running(BARE, workdir, "load") as b,
        running(FLOOR, workdir, "load") as c,
    ):
        by_key = {"A": a, "B": b, "C": c}
        for r in range(rounds):
            order = "ABC" if r % 2 == 0 else "CBA"
            for key in order:
                server = by_key[key]
                if warmup > 0:
                    gen.run(server, warmup, f"r{r}-{key}-warmup")
                cpu_before = server.cpu_seconds()
                result = gen.run(server, duration, f"r{r}-{key}")
                cpu = server.cpu_seconds() - cpu_before
                m = _measurement(server.spec.name, r + 1, result, cpu)
                measurements.append(m)
                print(
                    f"  round {r + 1}/{rounds} {m.server:<13} {m.rps:9.1f} req/s"
                    f"   p50 {m.p50_ms:6.2f} ms   p99 {m.p99_ms:6.2f} ms"
                    f"   {m.cpu_us_per_request:6.0f} CPU us/req"
                )
        for server in (a, b, c):
            if server.proc.poll() is not None:
                raise BenchError(f"{server.spec.name} died during the run")
            after[server.spec.key] = {
                "rss_mib": server.rss_mib(),
                "peak_rss_mib": server.rss_mib("VmHWM"),
            }
    return measurements, after


def _measurement(name: str, round_no: int, result: dict[str, Any], cpu: float) -> Measurement:
    seconds = result["duration_us"] / 1e6
    requests = int(result["requests"])
    errors = {k: int(result[k]) for k in ("read", "write", "timeout") if result[k]}
    if errors:
        print(f"  ! {name}: socket errors during the run: {errors}")
    return Measurement(
        server=name,
        round=round_no,
        requests=requests,
        seconds=seconds,
        rps=requests / seconds,
        p50_ms=result["p50"] / 1000,
        p75_ms=result["p75"] / 1000,
        p90_ms=result["p90"] / 1000,
        p99_ms=result["p99"] / 1000,
        max_ms=result["max"] / 1000,
        cpu_us_per_request=cpu / requests * 1e6 if requests else 0.0,
        socket_errors=errors,
    )


# --- the report -----------------------------------------------------------------------------


def summarize(measurements: list[Measurement], rounds: int) -> dict[str, Any]:
    def of(name: str, r: int) -> Measurement:
        return next(m for m in measurements if m.server == name and m.round == r)

    per_round = []
    for r in range(1, rounds + 1):
        a, b, c = of(BOT.name, r), of(BARE.name, r), of(FLOOR.name, r)
        per_round.append(
            {
                "round": r,
                "floor_fraction": a.rps / c.rps,
                "throughput_ratio": a.rps / b.rps,
                "p99_ratio": a.p99_ms / b.p99_ms,
                "p50_ratio": a.p50_ms / b.p50_ms,
                "cpu_ratio": a.cpu_us_per_request / b.cpu_us_per_request,
            }
        )

    def med(name: str, attr: str) -> float:
        return statistics.median(float(getattr(m, attr)) for m in measurements if m.server == name)

    medians = {
        spec.key: {
            attr: med(spec.name, attr)
            for attr in ("rps", "p50_ms", "p90_ms", "p99_ms", "cpu_us_per_request")
        }
        for spec in LOADED
    }
    ratios = {
        key: statistics.median(row[key] for row in per_round)
        for key in ("throughput_ratio", "p99_ratio", "p50_ratio", "cpu_ratio", "floor_fraction")
    }
    return {
        "per_round": per_round,
        "medians": medians,
        "ratios": ratios,
        "ratios_of_medians": {
            "throughput_ratio": medians["A"]["rps"] / medians["B"]["rps"],
            "p99_ratio": medians["A"]["p99_ms"] / medians["B"]["p99_ms"],
        },
        "targets": {
            "throughput_ratio": {
                "target": f">= {THROUGHPUT_TARGET}",
                "pass": ratios["throughput_ratio"] >= THROUGHPUT_TARGET,
            },
            "p99_ratio": {"target": f"<= {P99_TARGET}", "pass": ratios["p99_ratio"] <= P99_TARGET},
            "floor_fraction": {
                "target": f">= {FLOOR_AIM} (aim)",
                "pass": ratios["floor_fraction"] >= FLOOR_AIM,
            },
        },
    }


def print_report(
    measurements: list[Measurement],
    summary: dict[str, Any],
    startup: dict[str, dict[str, Any]],
    after: dict[str, dict[str, float]],
    meta: dict[str, Any],
) -> None:
    print()
    print(
        f"== /platform help ack: {meta['generator']}, {meta['connections']} connections, "
        f"{meta['duration_s']:g} s x {meta['rounds']} rounds per server, "
        f"{meta['cpus']} CPUs, load avg {meta['loadavg_before']} -> {meta['loadavg_after']}"
    )
    header = (
        f"{'round':>5}  {'server':<13} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'CPU us/req':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in summary["per_round"]:
        r = row["round"]
        names = [spec.name for spec in LOADED]
        for m in sorted(
            (m for m in measurements if m.round == r),
            key=lambda m: names.index(m.server) * (1 if r % 2 == 1 else -1),
        ):
            print(
                f"{r:>5}  {m.server:<13} {m.rps:9.1f} {m.p50_ms:8.2f} {m.p90_ms:8.2f} "
                f"{m.p99_ms:8.2f} {m.max_ms:8.2f} {m.cpu_us_per_request:10.0f}"
            )
        print(
            f"{'':>5}  {'A/B':<13} {row['throughput_ratio']:9.2f} {row['p50_ratio']:8.2f} "
            f"{'':>8} {row['p99_ratio']:8.2f} {'':>8} {row['cpu_ratio']:10.2f}"
        )
    print("-" * len(header))
    for spec in LOADED:
        m = summary["medians"][spec.key]
        print(
            f"{'med':>5}  {spec.name:<13} {m['rps']:9.1f} {m['p50_ms']:8.2f} {m['p90_ms']:8.2f} "
            f"{m['p99_ms']:8.2f} {'':>8} {m['cpu_us_per_request']:10.0f}"
        )
    ratios, targets = summary["ratios"], summary["targets"]
    print()
    print("Ratios (median over rounds of each round's A/B; ratio of medians in brackets):")
    for key, label in (("throughput_ratio", "throughput A/B"), ("p99_ratio", "p99 latency A/B")):
        verdict = "PASS" if targets[key]["pass"] else "FAIL"
        print(
            f"  {label:<16} {ratios[key]:5.2f}  [{summary['ratios_of_medians'][key]:.2f}]"
            f"   target {targets[key]['target']:<7} {verdict}"
        )
    verdict = "PASS" if targets["floor_fraction"]["pass"] else "below the aim"
    print(
        f"  {'throughput A/C':<16} {ratios['floor_fraction']:5.2f}"
        f"   (the bot's fraction of the plain aiohttp floor; aim >= {FLOOR_AIM}) {verdict}"
    )
    print(f"  {'p50 latency A/B':<16} {ratios['p50_ratio']:5.2f}")
    print(f"  {'CPU per req A/B':<16} {ratios['cpu_ratio']:5.2f}")
    print()
    print(f"Start-up (median of {STARTS} starts; each start's figure in brackets):")
    for spec in (BOT, BARE):
        s = startup[spec.key]
        readies = " ".join(f"{x:.2f}" for x in s["ready_s"])
        rsses = " ".join(f"{x:.1f}" for x in s["idle_rss_mib"])
        clean = "clean" if all(s["clean_stop"]) else "NOT CLEAN"
        print(
            f"  {spec.name:<13} start -> /readyz 200 {statistics.median(s['ready_s']):5.2f} s "
            f"[{readies}]   idle RSS {statistics.median(s['idle_rss_mib']):6.1f} MiB [{rsses}]"
            f"   SIGTERM: {clean}"
        )
    for spec in (BOT, BARE):
        a = after[spec.key]
        print(
            f"  {spec.name:<13} after the load: RSS {a['rss_mib']:.1f} MiB, "
            f"peak {a['peak_rss_mib']:.1f} MiB"
        )
    print(
        "  (B's /readyz is a plain 200 added by bench/serve_bare.py; A's pings the database."
        " Both processes hold an in-process Slack stand-in.)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Ack throughput and latency of /platform help: the bot vs bare Bolt "
        "and a plain aiohttp floor."
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (16)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run (1)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk (installed with apt-get if missing), or the weaker Python fallback",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seconds, not minutes: CI runs it so the bench never rots",
    )
    args = parser.parse_args(argv)
    if args.quick:
        global STARTS
        args.rounds, args.duration, args.warmup, STARTS = 1, 1.0, 1.0, 1  # wrk: whole seconds
    if args.rounds < 1 or args.connections < 1 or args.threads < 1:
        parser.error("--rounds, --connections and --threads must be at least 1")
    if not 0 < args.duration + args.warmup < SIGNATURE_WINDOW - 30:
        parser.error(f"--duration + --warmup must stay well inside {SIGNATURE_WINDOW} s")
    if args.threads > args.connections:
        parser.error("--threads must not exceed --connections")

    started = time.perf_counter()
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "loadavg_before": loadavg(),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="platform-bot-bench-") as scratch:
            workdir = Path(scratch)
            gen = find_load_generator(args.loadgen, args.connections, args.threads, workdir)
            meta["generator"] = f"{gen.kind} -t{gen.threads}" if gen.kind == "wrk" else gen.kind
            print(f"Start-up: {STARTS} starts of each server, alternating")
            startup = measure_startup(workdir)
            print(
                f"Load: {args.rounds} rounds, A,B then B,A ..., {args.warmup:g} s warm-up + "
                f"{args.duration:g} s each, {gen.kind}, {args.connections} connections"
            )
            measurements, after = measure_load(
                gen, args.rounds, args.duration, args.warmup, workdir
            )
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    meta["loadavg_after"] = loadavg()
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    summary = summarize(measurements, args.rounds)
    print_report(measurements, summary, startup, after, meta)
    clean = all(all(startup[k]["clean_stop"]) for k in startup)
    print(f"\n(took {meta['elapsed_s']:.0f} s)")
    if args.json:
        startup_out = {
            k: {
                **v,
                "ready_s_median": statistics.median(v["ready_s"]),
                "idle_rss_mib_median": statistics.median(v["idle_rss_mib"]),
            }
            for k, v in startup.items()
        }
        payload = {
            "meta": meta,
            "servers": {"A": BOT.name, "B": BARE.name},
            "measurements": [asdict(m) for m in measurements],
            **summary,
            "startup": startup_out,
            "after_load": after,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"results written to {args.json}")
    if not clean:
        print("BENCHMARK FAILED: a server did not shut down cleanly on SIGTERM", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
