"""JSON logs with a request id that follows a request into its Run, and the Run's id.

The request id is set when any HTTP request (or Socket Mode delivery) arrives, stored
on the Run, and set again by the worker that executes it, with the Run id beside it, so
one grep finds everything that happened for one click, and another everything one Run
did. Every line logged while serving a request or executing a Run carries them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
run_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("run_id", default=None)


def new_request_id() -> str:
    """A short random id for one request: 12 hex characters."""
    return os.urandom(6).hex()


def _ids() -> dict[str, str]:
    """The request id and Run id of the current context, those that are set."""
    ids = {"request_id": request_id.get(), "run_id": run_id.get()}
    return {key: value for key, value in ids.items() if value}


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_ids())
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = _ids()
        prefix = f"[{' '.join(f'{k}={v}' for k, v in ids.items())}] " if ids else ""
        return f"{record.levelname:<7} {record.name}: {prefix}{super().format(record)}"


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "slack_bolt", "slack_sdk", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
