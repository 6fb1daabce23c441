"""vehicle-mpc's controller, for use as a library (docs/api.md) as well as the daemon.

    from controller import load_config, build_runtime
    runtime = build_runtime(load_config(overrides=["track=figure_eight"]))
    outcome = runtime.core.step([0, 0, 0, 5, 0, float("nan"), float("nan")], stamp=0.0)

The names below are imported on first use: ``import controller.translog`` (reading a log)
must not load torch, and every submodule import goes through this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # configuration
    "DaemonConfig": "controller.config",
    "ConfigError": "controller.config",
    "load_config": "controller.config",
    # assembling what the daemon runs
    "Runtime": "controller.runtime",
    "build_runtime": "controller.runtime",
    "load_model": "controller.runtime",
    "build_planner_for": "controller.runtime",
    # the control step, without sockets
    "ControlCore": "controller.core",
    "StepOutcome": "controller.core",
    "CarState": "controller.core",
    # tracks and costs
    "Track": "controller.track",
    "load_track": "controller.track",
    "TrackCost": "controller.costs",
    "CostConfig": "controller.costs",
    "CostWeights": "controller.costs",
    # planners
    "Planner": "controller.planners",
    "PlanResult": "controller.planners",
    "MPPIConfig": "controller.planners",
    "ILQRConfig": "controller.planners",
    "CombinedConfig": "controller.planners",
    "build_planner": "controller.planners",
    # the wire and the log
    "ControllerClient": "controller.protocol_client",
    "DaemonUnavailable": "controller.protocol_client",
    "TransitionLog": "controller.translog",
    "load_steps": "controller.translog",
    "read_log": "controller.translog",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'controller' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
