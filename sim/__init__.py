"""The simulator: episodes over the wire or in-process, the true car, the demo (docs/api.md).

Names are imported on first use (``python -m sim`` should not pay for what it does not run).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DriveLog": "sim.closed_loop",
    "FunctionPlant": "sim.closed_loop",
    "make_core": "sim.closed_loop",
    "run_closed_loop": "sim.closed_loop",
    "start_state": "sim.closed_loop",
    "EpisodeConfig": "sim.episode",
    "SensorNoise": "sim.episode",
    "Summary": "sim.episode",
    "run_episode": "sim.episode",
    "ControllerClient": "sim.remote",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
