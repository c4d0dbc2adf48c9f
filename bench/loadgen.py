"""A fallback load generator for bench/ack.py, used only when `wrk` is not available.

Keeps ``--connections`` keep-alive connections busy for ``--duration`` seconds, each
POSTing the same body with the same headers back to back (a closed loop, like wrk),
and prints one line ``BENCH_JSON {...}`` in the shape bench/ack.py reads from wrk.

It is weaker than wrk: it is Python, so on a 2-core machine it competes with the server
under test for CPU and its own per-request overhead (tens of microseconds) is part of
every latency it reports. Both servers are measured with the same generator in the
same run, so the ratios stay meaningful, but absolute figures are lower than wrk's and
the ratios are pulled towards 1.

    .venv/bin/python bench/loadgen.py URL --body-file F --headers-json H
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp


def percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def generate(
    url: str, body: bytes, headers: dict[str, str], connections: int, duration: float
) -> dict[str, float]:
    latencies: list[float] = []
    counts = {"status": 0, "read": 0, "timeout": 0, "bytes": 0}
    timeout = aiohttp.ClientTimeout(total=5)
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as answer:
                        payload = await answer.read()
                except TimeoutError:
                    counts["timeout"] += 1
                    continue
                except aiohttp.ClientError:
                    counts["read"] += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                counts["bytes"] += len(payload)
                if not 200 <= answer.status < 400:
                    counts["status"] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    micro = [x * 1e6 for x in latencies]
    return {
        "requests": len(latencies),
        "duration_us": elapsed * 1e6,
        "bytes": counts["bytes"],
        "connect": 0,
        "read": counts["read"],
        "write": 0,
        "status": counts["status"],
        "timeout": counts["timeout"],
        "p50": percentile(micro, 50),
        "p75": percentile(micro, 75),
        "p90": percentile(micro, 90),
        "p99": percentile(micro, 99),
        "p999": percentile(micro, 99.9),
        "mean": sum(micro) / len(micro) if micro else 0.0,
        "max": micro[-1] if micro else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--headers-json", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    result = asyncio.run(
        generate(
            args.url,
            args.body_file.read_bytes(),
            json.loads(args.headers_json),
            args.connections,
            args.duration,
        )
    )
    print("BENCH_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
