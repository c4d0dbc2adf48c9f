"""Start-up benchmark: `platform-bot serve` from exec to GET /readyz 200, and idle RSS.

    .venv/bin/python bench/start.py [--starts 5] [--systems none|all] [--json FILE] [--quick]

The real command, `platform-bot serve` (the console script in this checkout's .venv),
on the sandbox's platform.yml and a SQLite file in a temporary directory that
`platform-bot db upgrade` migrated first (as a deployment does before it starts the
bot), with SLACK_TEAM_ID set so no Slack call is needed to start. `--systems all` also
configures every external system (Vault, GitLab, Kubernetes with a kubeconfig naming the
sandbox's clusters, Argo CD, Prometheus, Alertmanager, Grafana) at addresses nobody
listens on: the bot does not call them to start, so this measures what loading their
SDKs costs. Each start: the time from just before exec to the first /readyz 200, then
`VmRSS` after IDLE_SECONDS idle, then SIGTERM, which must end the process with status 0.

Targets (issue 18): start -> /readyz <= 1.0 s and idle RSS <= 80 MiB (the median over
the starts). A missed target prints FAIL and still exits 0; exit 1 only when the bench
itself failed (the bot did not start, or did not stop cleanly).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import loadavg

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CONFIG = ROOT / "sandbox" / "app" / "sample" / "platform.yml"
READY_TARGET_S = 1.0
RSS_TARGET_MIB = 80.0
IDLE_SECONDS = 2.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- {name: c, cluster: {server: "http://127.0.0.1:9"}}
users:
- {name: u, user: {token: t}}
contexts:
- {name: sandbox-staging, context: {cluster: c, user: u}}
- {name: sandbox-prod, context: {cluster: c, user: u}}
- {name: sandbox-prod-eu, context: {cluster: c, user: u}}
current-context: sandbox-staging
"""


class BenchError(Exception):
    """The benchmark itself failed (not: a target was missed)."""


def platform_bot() -> str:
    here = Path(sys.executable).parent / "platform-bot"
    if not here.exists():
        raise BenchError(f"{here} is missing: run scripts/bootstrap")
    return str(here)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(workdir: Path, systems: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "VAULT_", "GITLAB_", "ARGOCD_", "KUBE"))
        and key not in ("DATABASE_URL", "PLATFORM_CONFIG", "PORT")
    }
    fake = "bench-not-a-secret"  # nothing is called with these
    env.update(
        SLACK_BOT_TOKEN="xoxb-" + fake,
        SLACK_SIGNING_SECRET=fake,
        SLACK_TEAM_ID="T0BENCH",
        SLACK_API_URL="http://127.0.0.1:9/api/",
        DATABASE_URL=f"sqlite:///{workdir / 'bot.db'}",
        PLATFORM_CONFIG=str(CONFIG),
        HOST="127.0.0.1",
        LOG_LEVEL="WARNING",
    )
    if systems == "all":
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG)
        nobody = "http://127.0.0.1:9"
        env.update(
            VAULT_ADDR=nobody,
            VAULT_TOKEN=fake,
            GITLAB_URL=nobody,
            GITLAB_TOKEN=fake,
            KUBECONFIG=str(kubeconfig),
            ARGOCD_URL=nobody,
            ARGOCD_TOKEN=fake,
            PROMETHEUS_URL=nobody,
            ALERTMANAGER_URL=nobody,
            GRAFANA_URL=nobody,
        )
    return env


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    if match is None:
        raise BenchError(f"no VmRSS in /proc/{pid}/status")
    return int(match.group(1)) / 1024


def ready(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def one_start(env: dict[str, str], log: Path) -> dict[str, Any]:
    port = free_port()
    with log.open("ab") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [platform_bot(), "serve"],
            env={**env, "PORT": str(port)},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        while not ready(port):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise BenchError(f"platform-bot serve exited {proc.returncode}: " + "\n".join(tail))
            if time.perf_counter() - started > START_TIMEOUT:
                raise BenchError(f"no /readyz 200 within {START_TIMEOUT:.0f} s")
            time.sleep(0.005)
        ready_s = time.perf_counter() - started
        time.sleep(IDLE_SECONDS)
        rss = rss_mib(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    return {"ready_s": ready_s, "idle_rss_mib": rss, "clean_stop": code == 0}


def run(starts: int, systems: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="platform-bot-start-") as scratch:
        workdir = Path(scratch)
        env = environment(workdir, systems)
        done = subprocess.run(
            [platform_bot(), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise BenchError(f"platform-bot db upgrade failed: {done.stderr.strip()}")
        results = []
        for i in range(starts):
            result = one_start(env, workdir / "serve.log")
            results.append(result)
            print(
                f"  start {i + 1}/{starts}: /readyz 200 after {result['ready_s']:.2f} s, "
                f"idle RSS {result['idle_rss_mib']:.1f} MiB, "
                f"SIGTERM {'clean' if result['clean_stop'] else 'NOT CLEAN'}"
            )
            if not result["clean_stop"]:
                log = (workdir / "serve.log").read_text(errors="replace")
                print("\n".join(log.splitlines()[-15:]))
    ready_s = statistics.median(r["ready_s"] for r in results)
    rss = statistics.median(r["idle_rss_mib"] for r in results)
    return {
        "systems": systems,
        "starts": results,
        "ready_s_median": ready_s,
        "idle_rss_mib_median": rss,
        "targets": {
            "ready_s": {"target": f"<= {READY_TARGET_S}", "pass": ready_s <= READY_TARGET_S},
            "idle_rss_mib": {"target": f"<= {RSS_TARGET_MIB}", "pass": rss <= RSS_TARGET_MIB},
        },
        "clean": all(r["clean_stop"] for r in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="starts to take the median of (5)")
    parser.add_argument(
        "--systems", choices=("none", "all", "both"), default="both", help="configured systems"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--quick", action="store_true", help="one start of each: CI's smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.starts = 1
    load_before = loadavg()
    out: dict[str, Any] = {"loadavg_before": load_before, "runs": []}
    try:
        for systems in ("none", "all") if args.systems == "both" else (args.systems,):
            print(f"platform-bot serve, {args.starts} starts, external systems: {systems}")
            out["runs"].append(run(args.starts, systems))
    except BenchError as exc:
        print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
        return 1
    out["loadavg_after"] = loadavg()
    print(f"\n== start-up, load avg {load_before} -> {out['loadavg_after']} (median of starts)")
    for result in out["runs"]:
        t = result["targets"]
        print(
            f"  systems {result['systems']:<4}  start -> /readyz {result['ready_s_median']:5.2f} s"
            f"  target {t['ready_s']['target']} s  {'PASS' if t['ready_s']['pass'] else 'FAIL'}"
            f"   idle RSS {result['idle_rss_mib_median']:6.1f} MiB"
            f"  target {t['idle_rss_mib']['target']} MiB"
            f"  {'PASS' if t['idle_rss_mib']['pass'] else 'FAIL'}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if not all(r["clean"] for r in out["runs"]):
        print("BENCHMARK FAILED: the bot did not shut down cleanly on SIGTERM", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
