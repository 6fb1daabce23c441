"""Planners: MPPI, iLQR (box-DDP), MPPI then iLQR; one ``Planner`` interface (docs/api.md).

``build_planner(config, dynamics, cost, params, dtype)`` builds the one ``config.kind`` names;
``planner.plan(state, warm_start, last_action) -> PlanResult``; ``prepare()`` after replying.
"""

from controller.planners.base import PlanResult, Planner, shift_plan
from controller.planners.combined import CombinedConfig, MPPIThenILQR
from controller.planners.ilqr import ILQR, ILQRConfig
from controller.planners.mppi import MPPI, MPPIConfig
from controller.planners.noise import NoiseConfig
from controller.planners.registry import PlannerConfig, build_planner

__all__ = [
    "CombinedConfig",
    "ILQR",
    "ILQRConfig",
    "MPPI",
    "MPPIConfig",
    "MPPIThenILQR",
    "NoiseConfig",
    "PlanResult",
    "Planner",
    "PlannerConfig",
    "build_planner",
    "shift_plan",
]
