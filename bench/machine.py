"""What the benches report about the machine they ran on (imported by bench/ack.py and
bench/start.py, which are run as scripts, so bench/ is first on sys.path)."""

from __future__ import annotations

from pathlib import Path


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages from /proc/loadavg, or "?" without it."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
