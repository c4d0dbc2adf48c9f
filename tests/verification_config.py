"""The sample platform.yml with verification made testable: a gauge the test controls as
checkout's health query, and windows of a few seconds (real Prometheus, real time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sandbox.app.stack import SAMPLE_CONFIG

HEALTH_METRIC = "checkout_error_ratio"
"""The gauge behind checkout's health query; `set()` it on the MetricTarget."""


def verification_config(
    directory: Path, *, window_seconds: int = 3, auto_rollback: tuple[str, ...] = ()
) -> Path:
    """Write the config into `directory`; its path. checkout is watched with one query on
    HEALTH_METRIC; every environment's window is `window_seconds`; `auto_rollback` names
    the environments whose policy rolls back by itself."""
    model: dict[str, Any] = yaml.safe_load(SAMPLE_CONFIG.read_text(encoding="utf-8"))
    model["templates_dir"] = str(SAMPLE_CONFIG.parent / model.get("templates_dir", "templates"))
    for name, environment in model["environments"].items():
        environment["verification"] = {
            "window_seconds": window_seconds,
            "auto_rollback": name in auto_rollback,
        }
    model["services"]["checkout"]["health_queries"] = [
        {
            "name": "error ratio",
            "unit": "ratio",
            "expr": HEALTH_METRIC + '{service="{service}",env="{env}"}',
            "max_increase": 0.5,
            "min_delta": 0.01,
        }
    ]
    path = directory / "platform.yml"
    path.write_text(yaml.safe_dump(model, sort_keys=False), encoding="utf-8")
    return path
