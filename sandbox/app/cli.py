"""`platform-bot-sandbox`: the real bot wired to local stand-ins, and a terminal console
to talk to it as Slack's client would (see sandbox.app.console).

    platform-bot-sandbox                      # interactive, as alice
    platform-bot-sandbox --as bob             # as someone else
    platform-bot-sandbox --script FILE        # play a transcript; exit 1 on any error
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sandbox.app.console import run_console


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="platform-bot-sandbox",
        description="Run the bot against local stand-ins and talk to it in a terminal.",
    )
    parser.add_argument("--script", type=Path, help="play a transcript, exit 1 on any error")
    parser.add_argument("--as", dest="as_user", default="alice", help="start as this user")
    args = parser.parse_args(argv)
    return run_console(script=args.script, as_user=args.as_user)


if __name__ == "__main__":
    raise SystemExit(main())
